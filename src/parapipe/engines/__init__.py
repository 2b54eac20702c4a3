"""Container engines behind one small interface (`parapipe.engines.base.Engine`)."""
