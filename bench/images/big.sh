# big — about 200 MB of real files in 6 gzip layers: busybox-static, then
# directories of this machine's /usr (Debian packages' content: programs,
# Python and Perl libraries, locale data), each its own layer.
layout_init
busybox_root "$WORK/base"
dir_layer L0 "$WORK/base"
n=1
layers=(L0)
for d in /usr/libexec /usr/lib/python3.11 /usr/lib/python3 /usr/share/perl /usr/share/i18n; do
  [ -d "$d" ] || continue
  mkdir -p "$WORK/l$n$(dirname "$d")"
  cp -a "$d" "$WORK/l$n$(dirname "$d")/"
  dir_layer "L$n" "$WORK/l$n"
  rm -rf "$WORK/l$n"
  layers+=("L$n")
  n=$((n + 1))
done
mk_manifest M amd64 "$(jq -cn --arg p "$PATHENV" '{Env:[$p],Cmd:["sh"]}')" "${layers[@]}"
add_ref latest "$M_DESC"
