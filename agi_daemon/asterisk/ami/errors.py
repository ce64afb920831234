"""Errors of the AMI edge. None of them carries a secret."""
from __future__ import annotations


class AmiError(Exception):
    """Base of every failure the AMI client reports."""


class AmiProtocolError(AmiError):
    """The peer does not speak AMI, or sent a message larger than the parser accepts."""


class AmiAuthError(AmiError):
    """Asterisk refused the login (wrong username or secret, or the peer is not allowed)."""


class AmiNotConnected(AmiError):
    """An action was requested while no logged-in AMI connection exists."""


class AmiConnectionLost(AmiError):
    """The AMI connection ended (peer closed it, or it was declared dead) before the answer."""


class AmiActionTimeout(AmiError, TimeoutError):
    """Asterisk did not answer an action in time."""
