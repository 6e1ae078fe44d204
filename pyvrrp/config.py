"""keepalived.conf (the VRRP subset) → a typed model, with `file:line` errors like `keepalived -t`.

Two steps, like keepalived's `vrrp_parser.c`: the text becomes a tree of statements
(`keyword args... [{ children }]`, `!`/`#` comments, double-quoted strings, `include`), then
each known block is mapped onto dataclasses with every value checked. Unknown keywords are
errors that name the line and suggest the closest known keyword (the seed's `auto_type` typo);
keywords keepalived has but pyvrrp does not act on (SMTP alerts, GARP repeat tuning...) are
accepted with a warning, so a production keepalived.conf still passes `pyvrrp -t`.
"""

from __future__ import annotations

import difflib
import glob
import ipaddress
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pycommon.config import ConfigError, read_config_text

# -- the statement tree ----------------------------------------------------------------------


@dataclass
class Stmt:
    keyword: str
    args: list[str]
    file: str
    line: int
    children: list[Stmt] | None = None  # None: no block


def _tokens(line: str) -> list[str]:
    out: list[str] = []
    cur = ""
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if quoted:
            if c == '"':
                quoted = False
                out.append(cur)
                cur = ""
            else:
                cur += c
        elif c == '"':
            if cur:
                out.append(cur)
                cur = ""
            quoted = True
        elif c in "!#" and not cur:
            break
        elif c.isspace():
            if cur:
                out.append(cur)
                cur = ""
        elif c in "{}":
            if cur:
                out.append(cur)
                cur = ""
            out.append(c)
        else:
            cur += c
        i += 1
    if quoted or cur:
        out.append(cur)
    return out


def parse_tree(text: str, file: str, errors: list[ConfigError], depth: int = 0) -> list[Stmt]:
    root: list[Stmt] = []
    stack: list[list[Stmt]] = [root]
    opened: list[Stmt] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        toks = _tokens(raw)
        while toks:
            if toks[0] == "}":
                if len(stack) == 1:
                    errors.append(ConfigError("'}' without a matching '{'", file, lineno, "}"))
                else:
                    stack.pop()
                    opened.pop()
                toks = toks[1:]
                continue
            if toks[0] == "{":
                cur = stack[-1]
                if not cur or cur[-1].children is not None:
                    errors.append(ConfigError("'{' without a keyword before it", file,
                                              lineno, "{"))
                    cur.append(Stmt("", [], file, lineno))
                cur[-1].children = []
                opened.append(cur[-1])
                stack.append(cur[-1].children)
                toks = toks[1:]
                continue
            # a statement: tokens up to a brace
            j = 0
            while j < len(toks) and toks[j] not in "{}":
                j += 1
            kw, args = toks[0], toks[1:j]
            if kw == "include" and depth < 8:
                base = Path(file).parent
                for a in args:
                    for inc in sorted(glob.glob(str(base / a))):
                        try:
                            sub = Path(inc).read_text(encoding="utf-8")
                        except OSError as exc:
                            errors.append(ConfigError(f"cannot read include: {exc.strerror}",
                                                      file, lineno, a))
                            continue
                        stack[-1].extend(parse_tree(sub, inc, errors, depth + 1))
            else:
                stack[-1].append(Stmt(kw, args, file, lineno))
            toks = toks[j:]
    for st in opened:
        errors.append(ConfigError(f"block '{st.keyword}' is never closed", st.file, st.line,
                                  st.keyword))
    return root


# -- the model -------------------------------------------------------------------------------


@dataclass
class GlobalDefs:
    router_id: str = ""
    vrrp_version: int = 2
    skip_check_adv_addr: bool = False
    enable_script_security: bool = False
    script_user: str = ""


@dataclass
class VrrpScript:
    name: str
    script: str = ""
    interval: float = 1.0
    timeout: float = 0.0   # 0: same as interval
    weight: int = 0
    rise: int = 1
    fall: int = 1
    line: int = 0


@dataclass
class TrackRef:
    name: str
    weight: int | None = None  # None: the script's own weight (interfaces: 0)
    line: int = 0


@dataclass
class VirtualAddress:
    address: str
    prefix: int = 32
    dev: str = ""
    label: str = ""

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"


@dataclass
class Authentication:
    auth_type: str = "NONE"  # NONE | PASS | AH | HMAC (pyvrrp)
    auth_pass: str = ""


@dataclass
class VrrpInstance:
    name: str
    state: str = "BACKUP"
    interface: str = ""
    virtual_router_id: int = 0
    priority: int = 100
    advert_int: float = 1.0
    version: int = 2
    authentication: Authentication = field(default_factory=Authentication)
    virtual_ipaddress: list[VirtualAddress] = field(default_factory=list)
    nopreempt: bool = False
    preempt_delay: float = 0.0
    unicast_src_ip: str = ""
    mcast_src_ip: str = ""
    unicast_peer: list[str] = field(default_factory=list)
    track_script: list[TrackRef] = field(default_factory=list)
    track_interface: list[TrackRef] = field(default_factory=list)
    notify_master: str = ""
    notify_backup: str = ""
    notify_fault: str = ""
    notify_stop: str = ""
    notify: str = ""
    file: str = ""
    line: int = 0


@dataclass
class KeepalivedConfig:
    path: str
    global_defs: GlobalDefs
    scripts: dict[str, VrrpScript]
    instances: list[VrrpInstance]
    warnings: list[str] = field(default_factory=list)

    def instance(self, name: str) -> VrrpInstance:
        for i in self.instances:
            if i.name == name:
                return i
        raise KeyError(name)


# Accepted and reported as "no effect here" — real keepalived.conf files carry them.
_IGNORED_GLOBAL = {"notification_email", "notification_email_from", "smtp_server",
                   "smtp_connect_timeout", "smtp_helo_name", "vrrp_garp_interval",
                   "vrrp_gna_interval", "vrrp_garp_master_delay", "vrrp_garp_master_repeat",
                   "vrrp_garp_master_refresh", "vrrp_garp_lower_prio_repeat",
                   "vrrp_mcast_group4", "vrrp_iptables", "lvs_id", "lvs_sync_daemon",
                   "max_auto_priority", "vrrp_check_unicast_src", "vrrp_priority",
                   "enable_traps", "vrrp_notify_fifo", "script_security", "dynamic_interfaces",
                   "vrrp_no_swap", "checker_no_swap", "vrrp_startup_delay"}
_IGNORED_INSTANCE = {"garp_master_delay", "garp_master_repeat", "garp_master_refresh",
                     "garp_lower_prio_repeat", "garp_lower_prio_delay", "smtp_alert",
                     "dont_track_primary", "accept", "no_accept", "preempt", "debug",
                     "virtual_routes", "virtual_rules", "virtual_ipaddress_excluded",
                     "lvs_sync_daemon_interface", "strict_mode", "skip_check_adv_addr",
                     "check_unicast_src", "notify_master_rx_lower_pri", "use_vmac",
                     "vmac_xmit_base", "native_ipv6", "kernel_rx_buf_size"}
_IGNORED_TOP = {"virtual_server", "virtual_server_group", "vrrp_sync_group", "linkbeat_use_polling",
                "static_ipaddress", "static_routes", "static_rules", "net_namespace",
                "instance", "use_pid_dir"}


class _Mapper:
    """Maps the statement tree onto the model, collecting every error (keepalived -t style)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []

    def err(self, st: Stmt, msg: str, token: str | None = None) -> None:
        self.errors.append(ConfigError(msg, st.file, st.line, token))

    def warn(self, st: Stmt, msg: str) -> None:
        self.warnings.append(f"{st.file}:{st.line}: warning: {msg}")

    def unknown(self, st: Stmt, where: str, known: set[str]) -> None:
        close = difflib.get_close_matches(st.keyword, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        prep = "at" if where == "the top level" else "in"
        self.err(st, f"unknown keyword '{st.keyword}' {prep} {where}{hint}", st.keyword)

    # value helpers -------------------------------------------------------------------------
    def one(self, st: Stmt) -> str | None:
        if len(st.args) != 1:
            self.err(st, f"'{st.keyword}' takes one value, got {len(st.args)}",
                     " ".join(st.args) or st.keyword)
            return None
        return st.args[0]

    def integer(self, st: Stmt, lo: int, hi: int) -> int | None:
        v = self.one(st)
        if v is None:
            return None
        try:
            n = int(v)
        except ValueError:
            n = None
        if n is None or not lo <= n <= hi:
            self.err(st, f"'{st.keyword}' must be an integer in {lo}..{hi}", v)
            return None
        return n

    def number(self, st: Stmt, lo: float, hi: float) -> float | None:
        v = self.one(st)
        if v is None:
            return None
        try:
            x = float(v)
        except ValueError:
            x = None
        if x is None or not lo <= x <= hi:
            self.err(st, f"'{st.keyword}' must be a number in {lo:g}..{hi:g}", v)
            return None
        return x

    def ipv4(self, st: Stmt, v: str) -> str | None:
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError:
            self.err(st, f"'{st.keyword}': not an IPv4 address", v)
            return None

    def flag(self, st: Stmt) -> bool:
        if st.args:
            self.err(st, f"'{st.keyword}' takes no value", st.args[0])
        return True

    def block(self, st: Stmt) -> list[Stmt]:
        if st.children is None:
            self.err(st, f"'{st.keyword}' needs a {{ ... }} block", st.keyword)
            return []
        return st.children

    def no_block(self, st: Stmt) -> bool:
        if st.children is not None:
            self.err(st, f"'{st.keyword}' does not take a block", st.keyword)
            return False
        return True

    # sections ------------------------------------------------------------------------------
    def global_defs(self, st: Stmt, g: GlobalDefs) -> None:
        for c in self.block(st):
            k = c.keyword
            if k == "router_id":
                g.router_id = self.one(c) or ""
            elif k == "vrrp_version":
                g.vrrp_version = self.integer(c, 2, 3) or 2
            elif k == "vrrp_skip_check_adv_addr":
                g.skip_check_adv_addr = self.flag(c)
            elif k == "enable_script_security":
                g.enable_script_security = self.flag(c)
            elif k == "script_user":
                g.script_user = " ".join(c.args)
            elif k == "vrrp_strict":
                self.warn(c, "vrrp_strict is accepted but pyvrrp installs no firewall rules")
            elif k in _IGNORED_GLOBAL:
                self.warn(c, f"'{k}' has no effect in pyvrrp")
            else:
                self.unknown(c, "global_defs", {"router_id", "vrrp_version",
                                                "vrrp_skip_check_adv_addr", "vrrp_strict",
                                                "enable_script_security", "script_user"}
                             | _IGNORED_GLOBAL)

    def script(self, st: Stmt) -> VrrpScript | None:
        name = self.one(st)
        if name is None:
            return None
        s = VrrpScript(name, line=st.line)
        setters: dict[str, Callable[[Stmt], None]] = {
            "script": lambda c: setattr(s, "script", " ".join(c.args)),
            "interval": lambda c: setattr(s, "interval", self.number(c, 0.01, 86400) or 1.0),
            "timeout": lambda c: setattr(s, "timeout", self.number(c, 0.01, 86400) or 0.0),
            "weight": lambda c: setattr(s, "weight", self._weight(c)),
            "rise": lambda c: setattr(s, "rise", self.integer(c, 1, 1000) or 1),
            "fall": lambda c: setattr(s, "fall", self.integer(c, 1, 1000) or 1),
            "user": lambda c: None,
            "init_fail": lambda c: self.warn(c, "init_fail is not supported; scripts start OK"),
        }
        for c in self.block(st):
            fn = setters.get(c.keyword)
            if fn is None:
                self.unknown(c, f"vrrp_script {name}", set(setters))
            else:
                fn(c)
        if not s.script:
            self.err(st, f"vrrp_script {name} has no 'script'", name)
        return s

    def _weight(self, c: Stmt) -> int:
        return self.integer(c, -253, 253) or 0

    def _tracks(self, st: Stmt) -> list[TrackRef]:
        out: list[TrackRef] = []
        for c in self.block(st):
            ref = TrackRef(c.keyword, line=c.line)
            if c.args:
                if len(c.args) == 2 and c.args[0] == "weight":
                    try:
                        w = int(c.args[1])
                    except ValueError:
                        w = None
                    if w is None or not -253 <= w <= 253:
                        self.err(c, "track weight must be an integer in -253..253", c.args[1])
                    else:
                        ref.weight = w
                else:
                    self.err(c, f"expected '{c.keyword} [weight N]'", " ".join(c.args))
            out.append(ref)
        return out

    def instance(self, st: Stmt, g: GlobalDefs) -> VrrpInstance | None:
        name = self.one(st)
        if name is None:
            return None
        v = VrrpInstance(name, version=g.vrrp_version, file=st.file, line=st.line)
        seen: dict[str, Stmt] = {}
        known = {"state", "interface", "virtual_router_id", "priority", "advert_int", "version",
                 "authentication", "virtual_ipaddress", "nopreempt", "preempt_delay",
                 "unicast_src_ip", "mcast_src_ip", "unicast_peer", "track_script",
                 "track_interface", "notify_master", "notify_backup", "notify_fault",
                 "notify_stop", "notify"}
        for c in self.block(st):
            k = c.keyword
            seen[k] = c
            if k in ("authentication", "virtual_ipaddress", "unicast_peer", "track_script",
                     "track_interface"):
                pass  # block keywords, handled below
            elif k in known and not self.no_block(c):
                continue
            if k == "state":
                val = self.one(c)
                if val is not None and val.upper() not in ("MASTER", "BACKUP"):
                    self.err(c, "state must be MASTER or BACKUP", val)
                elif val is not None:
                    v.state = val.upper()
            elif k == "interface":
                v.interface = self.one(c) or ""
            elif k == "virtual_router_id":
                v.virtual_router_id = self.integer(c, 1, 255) or 0
            elif k == "priority":
                v.priority = self.integer(c, 1, 255) or v.priority
            elif k == "advert_int":
                v.advert_int = self.number(c, 0.01, 255) or v.advert_int
            elif k == "version":
                v.version = self.integer(c, 2, 3) or v.version
            elif k == "nopreempt":
                v.nopreempt = self.flag(c)
            elif k == "preempt_delay":
                v.preempt_delay = self.number(c, 0, 1000) or 0.0
            elif k in ("unicast_src_ip", "mcast_src_ip"):
                val = self.one(c)
                if val is not None:
                    setattr(v, k, self.ipv4(c, val) or "")
            elif k in ("notify_master", "notify_backup", "notify_fault", "notify_stop",
                       "notify"):
                if not c.args:
                    self.err(c, f"'{k}' needs a script", k)
                setattr(v, k, " ".join(shlex.quote(a) if " " in a else a for a in c.args)
                        if len(c.args) > 1 else (c.args[0] if c.args else ""))
            elif k == "authentication":
                self._auth(c, v)
            elif k == "virtual_ipaddress":
                self._vips(c, v)
            elif k == "unicast_peer":
                for p in self.block(c):
                    ip = self.ipv4(p, p.keyword)
                    if ip:
                        v.unicast_peer.append(ip)
            elif k == "track_script":
                v.track_script = self._tracks(c)
            elif k == "track_interface":
                v.track_interface = self._tracks(c)
            elif k in _IGNORED_INSTANCE:
                self.warn(c, f"'{k}' has no effect in pyvrrp")
            else:
                self.unknown(c, f"vrrp_instance {name}", known | _IGNORED_INSTANCE)
        if "virtual_router_id" not in seen:
            self.err(st, f"vrrp_instance {name}: missing virtual_router_id", name)
        if "interface" not in seen:
            self.err(st, f"vrrp_instance {name}: missing interface", name)
        if v.version == 2 and v.advert_int != int(v.advert_int):
            rounded = max(1, round(v.advert_int))
            self.warn(seen.get("advert_int", st), f"VRRPv2 advert_int must be whole seconds; "
                      f"{v.advert_int:g} rounded to {rounded}")
            v.advert_int = float(rounded)
        if v.version == 3 and v.authentication.auth_type in ("PASS", "AH"):
            self.err(seen.get("authentication", st), "VRRPv3 has no authentication "
                     "(RFC 5798); use auth_type HMAC or vrrp_version 2",
                     v.authentication.auth_type)
        if v.nopreempt and v.state == "MASTER":
            self.warn(seen["nopreempt"], "nopreempt with state MASTER: keepalived ignores "
                      "the MASTER start state then; pyvrrp starts as BACKUP")
            v.state = "BACKUP"
        if v.priority == 255 and v.state != "MASTER":
            self.warn(seen.get("priority", st), "priority 255 (address owner) with state "
                      "BACKUP: treated as MASTER")
        if not v.virtual_ipaddress:
            self.warn(st, f"vrrp_instance {name} has no virtual_ipaddress")
        return v

    def _auth(self, st: Stmt, v: VrrpInstance) -> None:
        a = v.authentication
        before = len(self.errors)
        for c in self.block(st):
            if c.keyword == "auth_type":
                t = (self.one(c) or "").upper()
                if t not in ("PASS", "AH", "HMAC"):
                    self.err(c, "auth_type must be PASS, AH or HMAC (pyvrrp)", t)
                elif t == "AH":
                    self.err(c, "auth_type AH (IPsec) is not supported; use PASS or HMAC", t)
                else:
                    a.auth_type = t
            elif c.keyword == "auth_pass":
                a.auth_pass = self.one(c) or ""
            else:
                self.unknown(c, "authentication", {"auth_type", "auth_pass"})
        if len(self.errors) > before:
            return  # one error per mistake: no follow-up complaints about the same block
        if a.auth_type == "NONE" and a.auth_pass:
            self.err(st, "auth_pass without auth_type", "authentication")
        if a.auth_type != "NONE" and not a.auth_pass:
            self.err(st, f"auth_type {a.auth_type} needs auth_pass", "authentication")
        if a.auth_type == "PASS" and len(a.auth_pass) > 8:
            self.warn(st, "auth_pass is longer than 8 characters; only the first 8 are used")

    def _vips(self, st: Stmt, v: VrrpInstance) -> None:
        for c in self.block(st):
            addr, _, plen = c.keyword.partition("/")
            try:
                ip = str(ipaddress.IPv4Address(addr))
                prefix = int(plen) if plen else 32
                if not 0 <= prefix <= 32:
                    raise ValueError
            except ValueError:
                self.err(c, "virtual_ipaddress: expected an IPv4 address[/prefix]", c.keyword)
                continue
            va = VirtualAddress(ip, prefix)
            rest = list(c.args)
            while rest:
                opt = rest.pop(0)
                if opt in ("dev", "label", "brd", "scope", "broadcast") and rest:
                    val = rest.pop(0)
                    if opt == "dev":
                        va.dev = val
                    elif opt == "label":
                        va.label = val
                else:
                    self.err(c, f"virtual_ipaddress: unknown option '{opt}'", opt)
                    break
            v.virtual_ipaddress.append(va)


def parse(text: str, path: str = "<config>") -> tuple[KeepalivedConfig, list[ConfigError]]:
    """Parse text; returns the model (best effort) and every error found."""
    errors: list[ConfigError] = []
    tree = parse_tree(text, path, errors)
    m = _Mapper(path)
    m.errors = errors
    g = GlobalDefs()
    for st in tree:
        if st.keyword == "global_defs":
            m.global_defs(st, g)
    scripts: dict[str, VrrpScript] = {}
    instances: list[VrrpInstance] = []
    top = {"global_defs", "vrrp_script", "vrrp_instance"}
    for st in tree:
        if st.keyword == "global_defs":
            continue
        if st.keyword == "vrrp_script":
            s = m.script(st)
            if s:
                if s.name in scripts:
                    m.err(st, f"duplicate vrrp_script {s.name}", s.name)
                scripts[s.name] = s
        elif st.keyword == "vrrp_instance":
            inst = m.instance(st, g)
            if inst:
                if any(i.name == inst.name for i in instances):
                    m.err(st, f"duplicate vrrp_instance {inst.name}", inst.name)
                instances.append(inst)
        elif st.keyword in _IGNORED_TOP:
            m.warn(st, f"'{st.keyword}' has no effect in pyvrrp")
        else:
            m.unknown(st, "the top level", top | _IGNORED_TOP)
    keys: dict[tuple[str, int], str] = {}
    for inst in instances:
        for ref in inst.track_script:
            if ref.name not in scripts:
                m.errors.append(ConfigError(f"track_script '{ref.name}' is not a defined "
                                            "vrrp_script", inst.file, ref.line, ref.name))
        key = (inst.interface, inst.virtual_router_id)
        if inst.virtual_router_id and key in keys:
            m.errors.append(ConfigError(f"virtual_router_id {inst.virtual_router_id} on "
                                        f"{inst.interface} is already used by {keys[key]}",
                                        inst.file, inst.line, inst.name))
        keys[key] = inst.name
    if not instances and not m.errors:
        m.errors.append(ConfigError("no vrrp_instance defined", path))
    cfg = KeepalivedConfig(path, g, scripts, instances, m.warnings)
    return cfg, sorted(m.errors, key=lambda e: (e.file != path, e.file, e.line))


def load(path: str | Path) -> KeepalivedConfig:
    """Parse a file; raise the first ConfigError (all of them: see `check`)."""
    cfg, errors = check(path)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            first.message += f" (and {len(errors) - 1} more errors; see pyvrrp -t)"
        raise first
    return cfg


def check(path: str | Path) -> tuple[KeepalivedConfig, list[ConfigError]]:
    return parse(read_config_text(path), str(Path(path)))
