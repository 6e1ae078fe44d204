"""pynode: the app-server node (Tomcat's role): connectors, a servlet-style API, webapps."""
