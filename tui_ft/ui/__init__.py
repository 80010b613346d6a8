"""The Textual dashboard. torch is imported lazily inside workers, never at startup."""
