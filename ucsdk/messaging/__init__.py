"""Messaging for users: publish/subscribe (``pubsub``) and streams (``streams``)."""
