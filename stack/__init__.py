"""The local stack: the topology of docker-compose.yml as plain processes on this machine (``make stack``).

``redis_procs`` starts private redis-server processes (one server with docker/redis.conf, or a small Redis
Cluster); ``run`` bootstraps data, artifact and store and starts ``longrank serve --workers N``.
"""
