#!/usr/bin/env bash
# kustomize for the offline validation of k8s/ (tests/unit/k8s/test_k8s.py), built once from the Go
# module proxy into ~/.cache/ecgstream/bin. A machine without Go >= 1.22 gets a Go toolchain from
# the same proxy (golang.org/toolchain), so nothing but the proxy is needed.
set -euo pipefail

version=v5.5.0
go_version=1.24.4
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ecgstream"
bin="$cache/bin"
target="$bin/kustomize-$version"
[ -x "$target" ] && { echo "$target"; exit 0; }
mkdir -p "$bin"

go_ok() {
  command -v "$1" >/dev/null 2>&1 || return 1
  local v; v=$("$1" env GOVERSION 2>/dev/null | sed 's/^go//')
  [ -n "$v" ] && [ "$(printf '%s\n1.22\n' "$v" | sort -V | head -1)" = "1.22" ]
}

go=go
if ! go_ok go; then
  root="$cache/go$go_version"
  if ! go_ok "$root/bin/go"; then
    echo "==> fetching Go $go_version from the Go module proxy" >&2
    zip="$cache/go$go_version.zip"
    curl -fsSL --retry 3 -o "$zip" \
      "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$go_version.linux-amd64.zip"
    rm -rf "$root" "$cache/golang.org"
    python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$zip" "$cache"
    mv "$cache/golang.org/toolchain@v0.0.1-go$go_version.linux-amd64" "$root"
    rm -rf "$cache/golang.org" "$zip"
    chmod +x "$root"/bin/* "$root"/pkg/tool/*/*
  fi
  go="$root/bin/go"
fi

echo "==> building kustomize $version (first run only)" >&2
tmp=$(mktemp -d)
GOBIN="$tmp" GOFLAGS=-mod=mod GOTOOLCHAIN=local "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$version" >&2
mv "$tmp/kustomize" "$target"
rm -rf "$tmp"
echo "$target"
