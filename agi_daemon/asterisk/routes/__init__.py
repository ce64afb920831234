"""The FastAGI routes: one small handler per route, listed in `table.route_table`."""
