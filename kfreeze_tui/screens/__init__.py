"""The app's screens: picker, loading, explorer, layer detail, error, help and dialogs."""
