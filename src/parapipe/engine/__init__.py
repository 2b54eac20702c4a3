"""Container engines behind one small interface (`parapipe.engine.api.Engine`)."""
