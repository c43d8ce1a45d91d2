"""Evaluation: image and video metrics, and the pretrained feature networks they rely on."""
