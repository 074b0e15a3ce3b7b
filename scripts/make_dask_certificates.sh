#!/usr/bin/env bash
# Certificates for Dask's TLS (docs/production.md): a private CA, and one key and certificate each
# for the scheduler, the workers and the clients (the Prefect song workers running soundsight).
#
#   scripts/make_dask_certificates.sh DIR [DAYS]      # DAYS: validity, default 825
#
# Writes DIR/ca.pem and DIR/{scheduler,worker,client}.{pem,key}; the CA's own key (DIR/ca.key)
# signs them and is needed only to make more: keep it off the hosts. Dask's TLS is mutual: every
# connection shows a certificate the CA signed, so a peer without one is refused. Copy to each
# host ca.pem and its role's .pem and .key (readable only by the user that runs the service).
set -euo pipefail
dir=${1:?usage: make_dask_certificates.sh DIR [DAYS]}
days=${2:-825}
mkdir -p "$dir"
umask 077
cd "$dir"

openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=soundsight Dask CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

for role in scheduler worker client; do
  openssl ecparam -name prime256v1 -genkey -noout -out "$role.key"
  openssl req -new -key "$role.key" -subj "/CN=soundsight Dask $role" -out "$role.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
    > "$role.ext"
  openssl x509 -req -in "$role.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days "$days" \
    -extfile "$role.ext" -out "$role.pem" 2>/dev/null
  rm "$role.csr" "$role.ext"
done
rm -f ca.srl
chmod 644 ca.pem scheduler.pem worker.pem client.pem
echo "$dir: ca.pem, scheduler/worker/client .pem and .key (ca.key signs more; keep it off the hosts)"
