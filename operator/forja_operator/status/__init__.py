"""Pure status computation: observed objects in, whole status and next steps out."""
