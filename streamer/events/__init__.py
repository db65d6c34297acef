"""Product events: the decoded event type, shapes, decoding and rejection reasons."""
