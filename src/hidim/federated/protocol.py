"""The message vocabulary between the hidim server and its sites, and what may leave a site.

Flower carries four kinds of messages; hidim uses them as follows (server → site, then the
site's reply):

========================  =====================================  =========================================
message                   server sends (config keys)             site replies (and nothing else)
========================  =====================================  =========================================
``get_properties``        ``phase=describe``, ``hidim_config``   ``site``, ``description`` (JSON of counts,
                                                                 moments, categories — see
                                                                 :func:`~hidim.federated.statistics.describe_site`)
``fit``                   global parameters, ``hidim_config``,   parameters (the layout's shapes),
                          ``hidim_statistics``, ``server_round``, ``num_examples`` (training items),
                          ``local_epochs``, ``bn``,              ``site``, ``train_loss``, ``seconds``
                          ``proximal_mu`` (FedProx)
``evaluate`` ``round``    global parameters, ``final``           val loss, ``num_examples``, ``site``,
                                                                 ``n_val``/``n_test``, ``val_<metric>``,
                                                                 ``test_<metric>``, ``seconds``
``evaluate`` ``finalise`` final parameters                       ``site``, ``aggregates`` (``.npz``: Cox
                                                                 event counts/exposure per interval,
                                                                 feature-density moments)
``evaluate`` ``reference`` final parameters, ``densities``       ``site``, ``aggregates`` (``.npz``: 201
                                                                 quantiles of training distances + count)
========================  =====================================  =========================================

A site may instead reply ``site`` + ``error`` (a message naming the problem); the server then
stops the federation and raises it. The server checks every reply against this allow-list
(:func:`check_reply`) and the parameter shapes against the model's layout, and records a
summary of every message it received (``federated.json`` → ``received``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hidim.errors import FederatedError

__all__ = [
    "CONFIG_KEY",
    "STATISTICS_KEY",
    "PHASE_KEY",
    "DESCRIBE",
    "ROUND",
    "FINALISE",
    "REFERENCE",
    "ERROR_KEY",
    "check_reply",
    "site_error",
    "DESCRIPTION_KEYS",
]

CONFIG_KEY = "hidim_config"
STATISTICS_KEY = "hidim_statistics"
PHASE_KEY = "phase"
DESCRIBE = "describe"
ROUND = "round"
FINALISE = "finalise"
REFERENCE = "reference"
ERROR_KEY = "error"

#: Top-level keys a site description may hold.
DESCRIPTION_KEYS = frozenset(
    {
        "site",
        "n",
        "channels",
        "fps",
        "intensity_methods",
        "target",
        "class_counts",
        "survival",
        "tabular",
        "vocab",
    }
)

_ALLOWED: dict[str, re.Pattern[str]] = {
    "properties": re.compile(r"^(site|description)$"),
    "fit": re.compile(r"^(site|train_loss|seconds)$"),
    ROUND: re.compile(r"^(site|seconds|n_(val|test)|(val|test)_[a-z0-9_]+)$"),
    FINALISE: re.compile(r"^(site|aggregates|seconds)$"),
    REFERENCE: re.compile(r"^(site|aggregates|seconds)$"),
}


def site_error(reply: Mapping[str, Any]) -> str | None:
    """The error a site reported, or ``None``."""
    value = reply.get(ERROR_KEY)
    return None if value is None else str(value)


def check_reply(kind: str, reply: Mapping[str, Any]) -> str:
    """Validate a site's reply metrics/properties against the allow-list; return its site.

    Raises:
        FederatedError: the site reported an error, or sent a key outside the protocol.
    """
    site = str(reply.get("site", "?"))
    error = site_error(reply)
    if error is not None:
        raise FederatedError(f"site {site!r}: {error}")
    pattern = _ALLOWED[kind]
    extra = sorted(k for k in reply if not pattern.match(str(k)))
    if extra:
        raise FederatedError(
            f"site {site!r} sent keys outside the hidim protocol in its {kind} reply: {extra}; "
            "server and site must run the same hidim version"
        )
    if "site" not in reply:
        raise FederatedError(f"a {kind} reply carries no site name; is the client a hidim site?")
    return site
