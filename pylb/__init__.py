"""pylb: the reverse proxy and balancer (nginx upstream / httpd mod_proxy_balancer role)."""

import os as _os

if _os.environ.get("PYLB_COMPILED"):  # run from a mypyc build of these sources (pylb.compiled)
    import sys as _sys

    from pylb.compiled import CompiledError as _CompiledError
    from pylb.compiled import activate as _activate

    try:
        _activate(_os.environ["PYLB_COMPILED"])
    except _CompiledError as _exc:
        print(f"pylb: {_exc}", file=_sys.stderr)
        raise SystemExit(2) from None
