"""cleargrad."""
