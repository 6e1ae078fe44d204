"""Which adverts an instance accepts (RFC 5798 §7.1, keepalived's checks). Sans-IO.

Checked before the state machine sees an advert, after the codec (checksum) and the
authenticator (PASS / HMAC): TTL 255 when the transport can see it, VRID (others are silently
not ours), version, the v2 advert interval (v3 learns the master's), and the address list
unless `vrrp_skip_check_adv_addr` (priority-0 adverts are always accepted).
"""

from __future__ import annotations

from pyvrrp.config import VrrpInstance
from pyvrrp.packet import VRRP_TTL, Advert

NOT_OURS = ""  # a reason that is not worth logging: another VRID on the same wire


def reject_reason(adv: Advert, cfg: VrrpInstance, ttl: int | None,
                  skip_check_adv_addr: bool = False) -> str | None:
    """None to accept; NOT_OURS to ignore quietly; else why the advert is dropped."""
    if ttl is not None and ttl != VRRP_TTL:
        return f"TTL {ttl} != 255"
    if adv.vrid != cfg.virtual_router_id:
        return NOT_OURS
    if adv.version != cfg.version:
        return f"VRRPv{adv.version} advert, configured for v{cfg.version}"
    if adv.version == 2 and adv.advert_int != cfg.advert_int:
        return f"advert_int {adv.advert_int:g} != {cfg.advert_int:g}"
    if adv.priority and not skip_check_adv_addr:
        mine = sorted(va.address for va in cfg.virtual_ipaddress)
        if sorted(adv.addresses) != mine:
            return (f"addresses {list(adv.addresses)} != {mine} "
                    "(vrrp_skip_check_adv_addr accepts them)")
    return None
