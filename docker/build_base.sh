#!/usr/bin/env bash
# Build the local base image soundsight-base:bookworm from Debian's archive (no container registry
# needed): debootstrap --variant=minbase bookworm -> tar | podman import.
#
#   sudo ./build_base.sh                 # reuses the image if it exists
#   FORCE=1 sudo ./build_base.sh         # rebuild
#
# Settings (environment):
#   BASE_IMAGE   tag to create                       (default soundsight-base:bookworm)
#   MIRROR       Debian mirror                       (default: the first URIs: of /etc/apt/sources.list.d/debian.sources,
#                                                     else http://deb.debian.org/debian)
#   SITE_CA_DIR  extra CA certificates (*.crt) to trust inside the image, e.g. a TLS-intercepting
#                egress proxy's CA (default /usr/local/share/ca-certificates if it holds any;
#                set SITE_CA_DIR= for a clean image)
#   WORKDIR      scratch directory for the root filesystem (default /var/tmp/soundsight-base-rootfs)
#   PODMAN       podman command (default: podman --storage-driver vfs)
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-soundsight-base:bookworm}
PODMAN=${PODMAN:-podman --storage-driver vfs}
WORKDIR=${WORKDIR:-/var/tmp/soundsight-base-rootfs}
SITE_CA_DIR=${SITE_CA_DIR-/usr/local/share/ca-certificates}
# Packages on top of minbase: Python 3.11 with venv (install.sh), TLS roots (pip over https), ps.
# No python3-dev: every dependency has a wheel or is pure Python (no compiler in the image).
PACKAGES=${PACKAGES:-ca-certificates,python3,python3-venv,procps}

if [[ -z "${MIRROR:-}" ]]; then
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -z "$MIRROR" ]] && MIRROR=$(awk '$1=="deb" && $0 ~ /debian/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
SECURITY_MIRROR=${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}

log() { printf '\033[1mbuild_base:\033[0m %s\n' "$*"; }

if [[ -z "${FORCE:-}" ]] && $PODMAN image exists "$BASE_IMAGE"; then
  log "$BASE_IMAGE exists; reusing it (FORCE=1 to rebuild)"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "build_base: run as root (debootstrap, podman vfs storage)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build_base: apt-get install -y debootstrap podman" >&2; exit 1; }

t0=$SECONDS
rm -rf "$WORKDIR"
mkdir -p "$WORKDIR"
log "debootstrap --variant=minbase bookworm from $MIRROR (+ $PACKAGES)"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$WORKDIR" "$MIRROR"

# Same suites as a stock Debian image: security and point updates for later apt-get installs.
cat >"$WORKDIR/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
# Like the official debian images: no recommends, no docs/man pages, no apt caches kept.
cat >"$WORKDIR/etc/apt/apt.conf.d/90container" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
cat >"$WORKDIR/etc/dpkg/dpkg.cfg.d/90container-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF

if [[ -n "$SITE_CA_DIR" ]] && compgen -G "$SITE_CA_DIR/*.crt" >/dev/null; then
  log "trusting extra CA certificates from $SITE_CA_DIR: $(cd "$SITE_CA_DIR" && echo *.crt)"
  mkdir -p "$WORKDIR/usr/local/share/ca-certificates"
  cp "$SITE_CA_DIR"/*.crt "$WORKDIR/usr/local/share/ca-certificates/"
  chroot "$WORKDIR" update-ca-certificates >/dev/null
fi

chroot "$WORKDIR" apt-get clean
rm -rf "$WORKDIR"/var/lib/apt/lists/* "$WORKDIR"/var/cache/apt/*.bin "$WORKDIR"/var/log/*.log \
       "$WORKDIR"/usr/share/doc/*/changelog* "$WORKDIR"/usr/share/man/*
log "rootfs $(du -sh "$WORKDIR" | cut -f1); python: $(chroot "$WORKDIR" python3 --version)"

log "podman import -> $BASE_IMAGE"
tar --numeric-owner -C "$WORKDIR" -c . | $PODMAN import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$BASE_IMAGE" >/dev/null
rm -rf "$WORKDIR"
log "done in $((SECONDS - t0)) s: $($PODMAN images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE")"
