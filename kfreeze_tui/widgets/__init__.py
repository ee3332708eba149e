"""The app's widgets: the layer tree and the status bar."""
