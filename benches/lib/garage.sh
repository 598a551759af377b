# Sourced by the S3 benches: starts a single-node Garage on free loopback ports.
#
#   source benches/lib/garage.sh; start_garage "$W"
#
# Sets S3 (the S3 API port), KEY and SECRET (the default key, allowed to create
# buckets), GPID (the server's pid, for the caller's cleanup) and writes
# "$W/creds" (kura's credentials_file). Data and logs go under "$W/garage".
GARAGE=${KURA_GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}

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
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
  printf 'aws_access_key_id = %s\naws_secret_access_key = %s\n' "$KEY" "$SECRET" > "$w/creds"
  GARAGE_DEFAULT_ACCESS_KEY=$KEY GARAGE_DEFAULT_SECRET_KEY=$SECRET RUST_LOG=warn \
    "$GARAGE" -c "$w/garage/garage.toml" server --single-node --default-access-key > "$w/garage/garage.log" 2>&1 &
  GPID=$!
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$S3/" >/dev/null && break; sleep 0.1; done
}
