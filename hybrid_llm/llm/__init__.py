"""Language model engines, model files, and prompt assembly."""
