#!/usr/bin/env bash
# Builds Redis 8.0.2 into DIR/bin from the upstream tarball Debian ships
# (redis_8.0.2.orig.tar.gz, checked by its sha256), for the peer comparison:
# axum-idempotent's Redis store needs hash-field expiry (HEXPIRE, Redis >= 7.4),
# which the Redis 7.0 of Debian bookworm lacks. Needs gcc, g++ and make; about
# 3 minutes on one core. Does nothing when DIR/bin/redis-server is already 8.0.2.
#
#   bench/peers/redis.sh DIR
set -euo pipefail
DIR=${1:?usage: $0 DIR}
VERSION=8.0.2
URL=http://deb.debian.org/debian/pool/main/r/redis/redis_${VERSION}.orig.tar.gz
SHA256=caf3c0069f06fc84c5153bd2a348b204c578de80490c73857bee01d9b5d7401f
SERVER=$DIR/bin/redis-server
if [ -x "$SERVER" ] && "$SERVER" --version 2>/dev/null | grep -q "v=$VERSION "; then
  exit 0
fi
mkdir -p "$DIR/bin" "$DIR/src"
TARBALL=$DIR/src/redis_${VERSION}.orig.tar.gz
if ! echo "$SHA256  $TARBALL" | sha256sum -c --status 2>/dev/null; then
  curl -fsSL -o "$TARBALL.part" "$URL"
  echo "$SHA256  $TARBALL.part" | sha256sum -c --status || { echo "checksum mismatch: $URL" >&2; exit 1; }
  mv -f "$TARBALL.part" "$TARBALL"
fi
rm -rf "$DIR/src/redis-$VERSION"
tar -xzf "$TARBALL" -C "$DIR/src"
if ! make -C "$DIR/src/redis-$VERSION" -j2 > "$DIR/src/build.log" 2>&1; then
  tail -30 "$DIR/src/build.log" >&2
  exit 1
fi
install -m 755 "$DIR/src/redis-$VERSION/src/redis-server" "$SERVER"
"$SERVER" --version
