# One host program in an image of its own (etcd, prometheus for deploy/compose.yml),
# staged by deploy/image/build like deploy/Dockerfile: rootfs/ holds the program and
# the libraries `ldd` names for it. The compose file gives each its entrypoint.
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 rootfs/var/lib/neuropil /var/lib/neuropil
USER 10001
WORKDIR /var/lib/neuropil
