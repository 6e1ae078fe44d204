"""The lab dashboard: a live view of a running lab, served by aiohttp on 127.0.0.1.

`pylab dashboard` (or `pylab up LAB --dashboard`) serves one static page that polls
`GET /api/state` once a second:

- the topology and each process's state (from the supervisor's `RUN/state.json`, so it
  sees labs started from any shell);
- which balancer holds the virtual IP (from the pyvrrp processes' health — see
  `pylab.dashboard.state.vrrp_view`, the hook issue 7 fills);
- requests per node (pylb's admin `/-/health` member counters) and sessions per node
  (pynode's `/-/health`);
- where each session the tracer made lives (home node from the id's `.route`, store node from
  memcached-session-manager's `-n1` infix, backup from the nodes' health when they report it);
- kill / restart buttons (POST with a CSRF token);
- a request tracer: the dashboard sends probes through the lab's entry and records which node
  answered, the status, the latency and whether the session was kept.

It drives the lab only from outside (state file, signals, HTTP), like every part of pylab.
"""

from pylab.dashboard.app import DEFAULT_PORT, build_app, serve

__all__ = ["DEFAULT_PORT", "build_app", "serve"]
