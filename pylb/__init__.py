"""pylb: the reverse proxy and balancer (nginx upstream / httpd mod_proxy_balancer role)."""
