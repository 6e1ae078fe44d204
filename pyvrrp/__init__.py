"""pyvrrp: VRRP virtual-IP failover (keepalived's role)."""
