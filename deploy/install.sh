#!/bin/sh
# `make install` and `make uninstall`: the built daemon under $PREFIX/lib/berth, a launcher in
# $PREFIX/bin, the systemd unit, and /etc/berth/berth.toml and /etc/crictl.yaml when absent.
# Every file written is listed in $PREFIX/lib/berth/install-manifest; uninstall removes exactly
# those (a config file only while it is as installed), then the folders left empty.
# Run from the repository root after `make build`; DESTDIR is prepended to every path written.
set -eu
cmd=${1:?usage: deploy/install.sh install|uninstall}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
LIBDIR=$PREFIX/lib/berth
BINDIR=$PREFIX/bin
MANIFEST=$LIBDIR/install-manifest

# The files of the built daemon, relative to the repository: no tests, benchmarks or dev packages.
daemon_files() {
  printf '%s\n' package.json README.md bin/berthd dist/native/berth_native.node dist/native/berth-exec
  ls docs/*.md
  find dist/src -name '*.js' ! -name '*.test.js' | sort
  node -e '
    const lock = JSON.parse(require("fs").readFileSync("package-lock.json", "utf8"));
    for (const [p, e] of Object.entries(lock.packages)) if (p.startsWith("node_modules/") && !e.dev) console.log(p);
  ' | while read -r dir; do find -L "$dir" -type f -not -path "$dir/node_modules/*" -not -name '*.md' | sort; done
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

do_install() {
  [ -f dist/src/main.js ] && [ -f dist/native/berth_native.node ] || { echo "install: nothing built here; run make build first" >&2; exit 1; }
  node_dir=$(dirname "$(command -v node)")
  old="$DESTDIR$MANIFEST"
  keep=""
  if [ -f "$old" ]; then
    # A reinstall: keep owning the config files it wrote, drop its daemon files (an upgrade may have fewer).
    keep=$(grep '^conf ' "$old" || true)
    grep '^file ' "$old" | cut -d' ' -f2- | while read -r f; do rm -f "$DESTDIR$f"; done
  fi
  mkdir -p "$DESTDIR$LIBDIR" "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR"
  list=$(mktemp)
  new=$(mktemp)
  trap 'rm -f "$list" "$new"' EXIT
  daemon_files > "$list"
  tar -chf - --no-recursion -T "$list" | tar -xpf - --no-same-owner -C "$DESTDIR$LIBDIR"
  sed "s|^|file $LIBDIR/|" "$list" > "$new"

  # The launcher: bin/berthd's shebang carries node's flags; PATH finds the node it was built with.
  cat > "$DESTDIR$BINDIR/berthd" <<LAUNCHER
#!/bin/sh
# berthd, installed by berth's make install; the daemon lives in $LIBDIR.
PATH="$node_dir:\$PATH" exec "$LIBDIR/bin/berthd" "\$@"
LAUNCHER
  chmod 0755 "$DESTDIR$BINDIR/berthd"
  echo "file $BINDIR/berthd" >> "$new"

  sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@LIBDIR@|$LIBDIR|g" deploy/berth.service.in > "$DESTDIR$UNITDIR/berth.service"
  chmod 0644 "$DESTDIR$UNITDIR/berth.service"
  echo "file $UNITDIR/berth.service" >> "$new"

  [ -z "$keep" ] || echo "$keep" >> "$new"
  conf="$SYSCONFDIR/berth/berth.toml"
  if [ ! -e "$DESTDIR$conf" ]; then
    mkdir -p "$DESTDIR$SYSCONFDIR/berth"
    node dist/src/main.js config --default > "$DESTDIR$conf"
    chmod 0644 "$DESTDIR$conf"
    echo "conf $(sha "$DESTDIR$conf") $conf" >> "$new"
  fi
  crictl="$SYSCONFDIR/crictl.yaml"
  if [ ! -e "$DESTDIR$crictl" ]; then
    mkdir -p "$DESTDIR$SYSCONFDIR"
    install -m 0644 deploy/crictl.yaml "$DESTDIR$crictl"
    echo "conf $(sha "$DESTDIR$crictl") $crictl" >> "$new"
  fi
  echo "file $MANIFEST" >> "$new"
  sort -u "$new" > "$DESTDIR$MANIFEST"
  echo "installed berth in $DESTDIR$LIBDIR ($(wc -l < "$DESTDIR$MANIFEST") files; list: $MANIFEST)"
  echo "start it with: systemctl daemon-reload && systemctl enable --now berth"
}

do_uninstall() {
  m="$DESTDIR$MANIFEST"
  [ -f "$m" ] || { echo "uninstall: no $m: berth is not installed under $DESTDIR$PREFIX" >&2; exit 1; }
  # Lines are "file <path>" and "conf <sha256> <path>"; paths may hold spaces.
  while read -r kind rest; do
    case $kind in
      file) [ "$rest" = "$MANIFEST" ] || rm -f "$DESTDIR$rest" ;;
      conf)
        sum=${rest%% *}
        f=${rest#* }
        if [ ! -e "$DESTDIR$f" ]; then :
        elif [ "$(sha "$DESTDIR$f")" = "$sum" ]; then rm -f "$DESTDIR$f"
        else echo "kept $DESTDIR$f: changed since it was installed"; fi ;;
    esac
  done < "$m"
  rm -f "$m"
  find "$DESTDIR$LIBDIR" -depth -type d -empty -delete 2>/dev/null || true
  rmdir "$DESTDIR$SYSCONFDIR/berth" 2>/dev/null || true
  echo "removed berth from $DESTDIR$PREFIX"
}

case $cmd in
  install) do_install ;;
  uninstall) do_uninstall ;;
  *) echo "usage: deploy/install.sh install|uninstall" >&2; exit 2 ;;
esac
