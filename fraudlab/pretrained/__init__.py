"""The pre-trained synthesizer and fraud detector, package data: an installed fraudlab samples and scores at once."""
