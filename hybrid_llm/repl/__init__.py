"""The interactive terminal front end: slash commands, input habits, streamed rendering."""
