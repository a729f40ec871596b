"""The pre-trained synthesizer shipped as package data, so an installed fraudlab samples without fitting."""
