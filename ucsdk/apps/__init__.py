"""Applications built on a :class:`ucsdk.Node`.

- :mod:`ucsdk.apps.uc`: a peer of libp2p's universal-connectivity app (chat, direct
  messages, files), with a notebook widget and the ``ucsdk chat`` command.
"""
