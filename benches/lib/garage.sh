# Sourced by the S3 benches: starts a single-node Garage on free loopback ports.
#
#   source benches/lib/garage.sh; start_garage "$W"
#
# Sets S3 (the S3 API port), KEY and SECRET (the default key, allowed to create
# buckets), GPID (the server's pid, for the caller's cleanup) and writes
# "$W/creds" (kura's credentials_file). Data and logs go under "$W/garage".
# GARAGE_HOST (default 127.0.0.1) is the address it listens on, and GARAGE_NETNS a
# network namespace to run it in (see start_link below).
GARAGE=${KURA_GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}

GARAGE_HOST=${GARAGE_HOST:-127.0.0.1}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_garage() {
  local w=$1 rpc admin
  rpc=$(free_port); S3=$(free_port); admin=$(free_port)
  KEY=GK$(openssl rand -hex 12); SECRET=$(openssl rand -hex 32)
  mkdir -p "$w/garage"
  cat > "$w/garage/garage.toml" <<TOML
metadata_dir = "$w/garage/meta"
data_dir = "$w/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "$GARAGE_HOST:$rpc"
rpc_public_addr = "$GARAGE_HOST:$rpc"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "$GARAGE_HOST:$S3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
  printf 'aws_access_key_id = %s\naws_secret_access_key = %s\n' "$KEY" "$SECRET" > "$w/creds"
  local netns=()
  [ -n "${GARAGE_NETNS:-}" ] && netns=(ip netns exec "$GARAGE_NETNS")
  GARAGE_DEFAULT_ACCESS_KEY=$KEY GARAGE_DEFAULT_SECRET_KEY=$SECRET RUST_LOG=warn \
    "${netns[@]}" "$GARAGE" -c "$w/garage/garage.toml" server --single-node --default-access-key > "$w/garage/garage.log" 2>&1 &
  GPID=$!
  for _ in $(seq 100); do curl -s "http://$GARAGE_HOST:$S3/" >/dev/null && break; sleep 0.1; done
}

# start_link RATE RTT_MS: a network namespace behind a veth pair whose two ends are
# shaped to RATE (tc's units: 1gbit, 500mbit) with RTT_MS of round trip, as between a
# backup server and a remote site. Sets GARAGE_NETNS and GARAGE_HOST for
# start_garage; stop_link removes it. Needs root and iproute2.
start_link() {
  local rate=$1 half
  half=$(awk -v r="$2" 'BEGIN { printf "%.3f", r / 2 }')
  LINK_ID=k$$
  GARAGE_NETNS=kura-link-$$ GARAGE_HOST=10.203.0.2
  ip netns add "$GARAGE_NETNS"
  ip link add "v$LINK_ID" type veth peer name "p$LINK_ID"
  ip link set "p$LINK_ID" netns "$GARAGE_NETNS"
  ip addr add 10.203.0.1/24 dev "v$LINK_ID"
  ip link set "v$LINK_ID" up
  ip netns exec "$GARAGE_NETNS" ip addr add "$GARAGE_HOST/24" dev "p$LINK_ID"
  ip netns exec "$GARAGE_NETNS" ip link set "p$LINK_ID" up
  ip netns exec "$GARAGE_NETNS" ip link set lo up
  # Each direction: half the round trip, the rate, and a queue deep enough for it.
  tc qdisc add dev "v$LINK_ID" root netem delay "${half}ms" rate "$rate" limit 100000
  ip netns exec "$GARAGE_NETNS" tc qdisc add dev "p$LINK_ID" root netem delay "${half}ms" rate "$rate" limit 100000
}
stop_link() {
  [ -n "${GARAGE_NETNS:-}" ] || return 0
  ip link del "v$LINK_ID" 2>/dev/null || true
  ip netns del "$GARAGE_NETNS" 2>/dev/null || true
}
