"""Git: changed files for `when.changed`, the pre-push hook and the GitHub Actions export."""
