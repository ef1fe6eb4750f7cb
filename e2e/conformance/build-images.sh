#!/usr/bin/env bash
# build-images.sh: builds every image critest uses and pushes it to the
# harness's registry under the repository path of its upstream name
# (registry.k8s.io/e2e-test-images/busybox:1.29-2 is pushed as
# e2e-test-images/busybox:1.29-2), so that a runtime whose registry mirrors
# send registry.k8s.io, gcr.io and k8s.gcr.io here pulls them by their
# upstream names. Run by setup.sh; needs CONF_WORK.
#
# The images are made of Debian's busybox-static (every applet a hard link
# to it, as in the upstream busybox image: a masked /bin/ls must not hide
# the other applets), with three exceptions, each for a spec that could not
# pass otherwise:
# - /bin/sh is Debian's dynamically linked busybox (with the libraries it
#   needs): busybox-static's shell runs applets in-process, without exec, so
#   "sh -c ls" would not see a masked /bin/ls (MaskedPaths spec);
# - nonewprivs is a five-line C program installed setuid root (busybox
#   drops a setuid privilege before running an applet);
# - pause, the sandbox image containerd runs, is a small C program.
# Layers are gzip tars made with GNU tar, configs and manifests JSON made
# with jq, pushed with curl through the registry API: no image tool needed.
# Each layer is a variable (BASE, NGINX ...) that image() reads by name:
# shellcheck disable=SC2034
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
load_work

B=$CONF_WORK/images
ARCH=$(dpkg --print-architecture)
CREATED=2024-01-01T00:00:00Z
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

rm -rf "$B"
mkdir -p "$B/root" "$B/blobs" "$B/src"

# ---------------------------------------------------------------- helpers

# Makes a gzip layer of the contents of DIR; prints "DIGEST DIFF_ID SIZE".
layer() { # layer DIR
    local tar=$B/blobs/layer.tar digest diff size
    (cd "$1" && tar --numeric-owner --sort=name --mtime="$CREATED" -cf "$tar" -- .)
    diff=sha256:$(sha256sum "$tar" | cut -d' ' -f1)
    gzip -n -9 "$tar"
    digest=sha256:$(sha256sum "$tar.gz" | cut -d' ' -f1)
    size=$(stat -c %s "$tar.gz")
    mv "$tar.gz" "$B/blobs/${digest#sha256:}"
    echo "$digest $diff $size"
}

# Stores JSON from stdin as a blob; prints "DIGEST SIZE".
json_blob() {
    local tmp=$B/blobs/json.tmp digest
    jq -cS . > "$tmp"
    digest=sha256:$(sha256sum "$tmp" | cut -d' ' -f1)
    mv "$tmp" "$B/blobs/${digest#sha256:}"
    echo "$digest $(stat -c %s "$B/blobs/${digest#sha256:}")"
}

# Pushes blob DIGEST to REPO unless the registry has it there already.
push_blob() { # push_blob REPO DIGEST
    local repo=$1 digest=$2 url=http://$REGISTRY/v2/$1 loc sep
    curl -sf -o /dev/null -I "$url/blobs/$digest" && return 0
    loc=$(curl -sf -o /dev/null -D - -X POST "$url/blobs/uploads/" |
        awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
    [ -n "$loc" ] || die "registry $REGISTRY gave no upload location for $repo"
    case $loc in http*) ;; *) loc=http://$REGISTRY$loc ;; esac
    case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
    curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$B/blobs/${digest#sha256:}" "$loc${sep}digest=$digest" ||
        die "pushing blob $digest to $repo failed"
}

# An image: the layers named (by their variables), the config fragment
# given as JSON (Entrypoint, Cmd, User, Env, Labels ...), pushed as each
# REPO:TAG listed. The image's config always has PATH and Cmd ["sh"]
# unless the fragment says otherwise.
#   image 'LAYER LAYER' '{"User":"1002"}' REPO:TAG...
image() { # image LAYERS CONFIG REF...
    local layers=$1 config=$2 l ref repo tag digest diff size cdigest csize
    shift 2
    local descs=() diffs=() digests=()
    for l in $layers; do
        read -r digest diff size <<< "${!l}"
        descs+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$digest\",\"size\":$size}")
        diffs+=("\"$diff\"")
        digests+=("$digest")
    done
    read -r cdigest csize < <(jq -n --arg arch "$ARCH" --arg created "$CREATED" \
        --arg path "$PATH_ENV" --argjson diffs "[$(IFS=,; echo "${diffs[*]}")]" \
        --argjson extra "$config" '{
            architecture: $arch, os: "linux", created: $created,
            config: ({Env: [$path], Cmd: ["sh"]} + $extra | with_entries(select(.value != null))),
            rootfs: {type: "layers", diff_ids: $diffs},
            history: [$diffs[] | {created: $created, created_by: "e2e/conformance/build-images.sh"}]
        }' | json_blob)
    jq -n --arg cd "$cdigest" --argjson cs "$csize" \
        --argjson layers "[$(IFS=,; echo "${descs[*]}")]" '{
            schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
            config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
            layers: $layers
        }' > "$B/manifest.json"
    for ref in "$@"; do
        repo=${ref%:*} tag=${ref##*:}
        for digest in "${digests[@]}" "$cdigest"; do push_blob "$repo" "$digest"; done
        curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
            --data-binary "@$B/manifest.json" "http://$REGISTRY/v2/$repo/manifests/$tag" ||
            die "pushing manifest $ref failed"
        echo "$ref" >> "$B/pushed"
    done
}

# A directory under $B/files/NAME for one layer's files.
files() { mkdir -p "$B/files/$1"; echo "$B/files/$1"; }

# ---------------------------------------------------------------- helpers in C
step "compiling pause and nonewprivs (static)"
for p in pause nonewprivs; do
    gcc -static -O2 -s -o "$B/src/$p" "$HERE/images/$p.c"
done

# ---------------------------------------------------------------- base layer
step "assembling the busybox root filesystem"
R=$B/root
mkdir -p "$R"/{bin,sbin,etc,root,home,tmp,proc,sys,dev,run,var/run,var/www,usr/bin,usr/sbin,mnt}
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
cp /bin/busybox "$R/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || [ "$applet" = sh ] || ln -f "$R/bin/busybox" "$R/bin/$applet"
done

# /bin/sh: Debian's non-standalone busybox (see the top of this file),
# unpacked from its package (it conflicts with busybox-static, so it is not
# installed), with the shared libraries it links.
mkdir -p "$B/deb"
(cd "$B/deb" && apt-get download busybox >/dev/null 2>&1) ||
    die "apt-get download busybox failed (run setup.sh, which updates the package lists)"
dpkg-deb -x "$B"/deb/busybox_*.deb "$B/deb/x"
cp "$B/deb/x/bin/busybox" "$R/bin/sh"
for lib in $(ldd "$R/bin/sh" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done

# Commands critest runs that no busybox build here has.
cat > "$R/bin/pgrep" <<'EOF'
#!/bin/sh
# pgrep stand-in: prints the pids whose command name contains $1.
found=1
for d in /proc/[0-9]*; do
    read -r comm < "$d/comm" 2>/dev/null || continue
    case "$comm" in *"$1"*) echo "${d#/proc/}"; found=0 ;; esac
done
exit $found
EOF
cat > "$R/bin/ipcs" <<'EOF'
#!/bin/sh
# ipcs stand-in: lists this IPC namespace's shared memory segments.
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch"
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size cpid lpid nattch uid rest; do
    echo "$key $shmid $uid $perms $size $nattch"
done
EOF
chmod 0755 "$R/bin/pgrep" "$R/bin/ipcs"

cat > "$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat > "$R/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
mail:x:8:
wheel:x:10:root
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
EOF
: > "$R/etc/hosts"
: > "$R/etc/resolv.conf"
echo busybox > "$R/etc/hostname"
echo '<html><body>busybox httpd</body></html>' > "$R/var/www/index.html"
chown -R 0:0 "$R"

step "making the layers"
BASE=$(layer "$R")

# nginx stand-in: busybox httpd run as /usr/sbin/nginx (a copy of busybox
# called with argv[0] "httpd", so its command name is "nginx"), started by a
# shell whose command line holds "nginx: master process", as nginx's does;
# it writes the server's pid to /var/run/nginx.pid.
F=$(files nginx)
mkdir -p "$F/usr/sbin" "$F/usr/share/nginx/html"
cp /bin/busybox "$F/usr/sbin/nginx"
echo '<html><body>Welcome to nginx (busybox httpd stand-in)</body></html>' > "$F/usr/share/nginx/html/index.html"
cat > "$F/usr/share/nginx/stand-in.sh" <<'EOF'
#!/bin/sh
# nginx stand-in ("$1" is nginx's own command line, for ps and /proc/1/cmdline).
port=${LISTEN_PORT:-80}
exec -a httpd /usr/sbin/nginx -f -p "$port" -h /usr/share/nginx/html &
server=$!
echo "$server" > /var/run/nginx.pid
trap 'kill "$server"; rm -f /var/run/nginx.pid; exit 0' TERM QUIT INT
echo "nginx stand-in: busybox httpd on :$port, pid $server" >&2
wait "$server"
EOF
chmod 0755 "$F/usr/share/nginx/stand-in.sh"
chown -R 0:0 "$F"
NGINX=$(layer "$F")

F=$(files nonewprivs)
install -D -m 4755 -o 0 -g 0 "$B/src/nonewprivs" "$F/usr/local/bin/nonewprivs"
NONEWPRIVS=$(layer "$F")

# cri-tools' image-predefined-group: user 1000 in a group 50000 the image defines.
F=$(files predefined-group)
mkdir -p "$F/etc" "$F/home/default-user"
cp "$R/etc/passwd" "$R/etc/group" "$F/etc/"
echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' >> "$F/etc/passwd"
echo 'default-user:x:1000:' >> "$F/etc/group"
echo 'group-defined-in-image:x:50000:default-user' >> "$F/etc/group"
chown -R 0:0 "$F"
chown 1000:1000 "$F/home/default-user"
PREDEFINED=$(layer "$F")

# cri-tools' image-test: busybox and an empty file named after the test, so
# that each is an image of its own. (test-image-digest is not built: critest
# pulls it by the upstream manifest's digest, which no image made here has.)
for t in test-image-latest test-image-1 test-image-2 test-image-3 test-image-tags \
    test-image-tag-test test-image-tag-all; do
    F=$(files "$t")
    : > "$F/$t"
    v=T_${t//-/_}
    printf -v "$v" '%s' "$(layer "$F")"
done

# pause: two different images (critest removes pause:3.9 by its id; the
# sandbox image containerd runs is pause:3.10).
F=$(files pause)
install -m 0755 "$B/src/pause" "$F/pause"
PAUSE=$(layer "$F")
F=$(files pause-3.10)
install -m 0755 "$B/src/pause" "$F/pause"
echo 3.10 > "$F/version"
PAUSE_310=$(layer "$F")

# ---------------------------------------------------------------- push
step "pushing the images to $REGISTRY"
: > "$B/pushed"
E=e2e-test-images
C=k8s-staging-cri-tools
STAND_IN='"Labels": {"io.crius.conformance": "stand-in"}'
image BASE '{}' $E/busybox:1.29-2
image 'BASE NGINX' '{"Entrypoint": ["/usr/share/nginx/stand-in.sh"],
    "Cmd": ["nginx: master process nginx -g daemon off;"],
    "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT", '"$STAND_IN"'}' $E/nginx:1.14-2
image 'BASE NGINX' '{"Entrypoint": ["/usr/share/nginx/stand-in.sh"],
    "Cmd": ["nginx: master process nginx -g daemon off;"],
    "Env": ["'"$PATH_ENV"'", "LISTEN_PORT=12003"], "StopSignal": "SIGQUIT", '"$STAND_IN"'}' \
    "$C/hostnet-nginx-$ARCH:latest"
image BASE '{"Entrypoint": ["/bin/sh", "-c",
    "echo \"httpd: busybox httpd on :80\" >&2; exec httpd -f -p 80 -h /var/www"],
    "Cmd": null, "ExposedPorts": {"80/tcp": {}}, '"$STAND_IN"'}' $E/httpd:2.4.39-4
image 'BASE NONEWPRIVS' '{"Entrypoint": ["/usr/local/bin/nonewprivs"], "Cmd": null}' $E/nonewprivs:1.3
image BASE '{"User": "1002"}' $C/test-image-user-uid:latest
image BASE '{"User": "www-data"}' $C/test-image-user-username:latest
image BASE '{"User": "1003:1004"}' $C/test-image-user-uid-group:latest
image BASE '{"User": "www-data:1004"}' $C/test-image-user-username-group:latest
image 'BASE PREDEFINED' '{"User": "1000"}' $C/test-image-predefined-group:latest
image 'BASE T_test_image_latest' '{}' $C/test-image-latest:latest
image 'BASE T_test_image_1' '{}' $C/test-image-1:latest
image 'BASE T_test_image_2' '{}' $C/test-image-2:latest
image 'BASE T_test_image_3' '{}' $C/test-image-3:latest
image 'BASE T_test_image_tags' '{}' $C/test-image-tags:1 $C/test-image-tags:2 $C/test-image-tags:3
image 'BASE T_test_image_tag_test' '{}' $C/test-image-tag:test
image 'BASE T_test_image_tag_all' '{}' $C/test-image-tag:all
image PAUSE '{"Entrypoint": ["/pause"], "Cmd": null, "Env": [], "User": "65535:65535"}' pause:3.9
image PAUSE_310 '{"Entrypoint": ["/pause"], "Cmd": null, "Env": [], "User": "65535:65535"}' pause:3.10

step "pushed $(wc -l < "$B/pushed") image names; removing the build tree"
cp "$B/pushed" "$CONF_WORK/images.pushed"
rm -rf "$B"
