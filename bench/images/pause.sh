# pause — the sandbox image containerd runs for every pod: busybox-static
# sleeping forever (cria needs no pause image; containerd cannot do without).
layout_init
busybox_root "$WORK/root"
dir_layer ROOT "$WORK/root"
mk_manifest M amd64 "$(jq -cn --arg p "$PATHENV" '{Env:[$p],Entrypoint:["/bin/sleep","2147483647"]}')" ROOT
add_ref latest "$M_DESC"
