"""The CTAO-policy lake's front end: repeated slashes in a request's path merged, as Apache does.

CTAO's DID names are absolute paths, so a client's `/dids/<scope>/%2Fctao%2F...` arrives, once
gunicorn has decoded it, as `/dids/<scope>//ctao/...`. CTAO's Rucio runs behind Apache, whose
`MergeSlashes` (on by default) makes that `/dids/<scope>/ctao/...`, which is what the policy's
`SCOPE_NAME_REGEXP` (`/([^/]*)(?=/)(.*)`) expects: the name keeps its one leading `/`. gunicorn
merges nothing, so this WSGI wrapper does it. It runs inside the Rucio server's venv (gunicorn
loads it from the lake's `etc/`), so it imports nothing of nightlake.
"""

import re

from rucio.web.rest.flaskapi.v1.main import application as rucio_application

_REPEATED = re.compile(r"//+")


def application(environ, start_response):
    """Rucio's own WSGI application, called with the path's slashes merged."""
    environ["PATH_INFO"] = _REPEATED.sub("/", environ.get("PATH_INFO", ""))
    return rucio_application(environ, start_response)
