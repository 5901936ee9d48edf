"""Signed release bundles and their A/B installation on a unit (docs/RELEASES.md).

One module per concept: ``target`` (the architectures a bundle is built for), ``lock_file``
(the hashed lock, read and filtered for a target), ``bundle_manifest`` (the signed manifest),
``bundle_tar`` (the bundle's container, read strictly), ``bundle_build`` (``lfr release
build``), ``bundle_reader`` (an untrusted bundle verified and unpacked), ``release_layout`` (the
install layout under ROOT), ``service_control`` (restart and health), ``installer`` (``lfr
update apply``) and ``commands`` (their command lines).
"""
