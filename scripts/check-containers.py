"""Runs every container of the rendered manifests from the unpacked image as a kubelet with containerd and
runc would (scripts/check-containers.sh prepares the image, the manifests and the test API server tool).

For each workload (its init containers one after another, each must exit 0; then its main containers),
each container runs in a mount, PID and IPC namespace of its own, in one network namespace that plays the
node's host network (every wgmesh Pod is hostNetwork), with what the runtime would give it:
- its user: securityContext.runAsUser, else the Pod's, else the image's User; the group likewise (else the
  user's group in the image's /etc/passwd); the Pod's supplementalGroups and fsGroup; runAsNonRoot
  refused for uid 0, as the kubelet does;
- its capabilities: all when privileged, else containerd's default set less `drop` plus `add`, as the
  bounding set; the process keeps them after exec only as root (a non-root uid gets no effective or
  permitted capabilities, and there are no ambient ones); allowPrivilegeEscalation: false sets no_new_privs;
- its root filesystem: an overlay on the image's, read-only with readOnlyRootFilesystem; /proc of its PID
  namespace with /proc/sys, /proc/bus, /proc/fs, /proc/irq and /proc/sysrq-trigger read-only and runc's
  masked paths hidden, /sys read-only, unless privileged; /dev a tmpfs with the standard devices (all the
  host's when privileged), /dev/pts, /dev/shm, /dev/mqueue;
- the kubelet's mounts: /etc/hosts, /etc/hostname, /etc/resolv.conf, /dev/termination-log, hostPath
  volumes (folders of the check's stand-in node; under /dev, the host's device, type-checked), emptyDir
  and configMap volumes, and the service-account folder (token, ca.crt, namespace) unless
  automountServiceAccountToken is false;
- its environment: the image's, the kubelet's KUBERNETES_SERVICE_* and HOSTNAME, the manifest's env with
  configMapKeyRef read from the rendered ConfigMaps and fieldRef from the Pod, HOME from the image's
  /etc/passwd; `command` and `args` (else the image's Entrypoint and Cmd) with $(VAR) expanded.
Not modelled: seccomp and AppArmor profiles, cgroups (resource limits, the device allowlist), user
namespaces. The readiness and liveness probes' httpGet are sent as the kubelet does, to the node's
address (a hostNetwork Pod's IP).

Each --rendered after the first is applied after the workloads of the one before are deleted (the
cleanup DaemonSet after manifests/, as docs/operations.md's uninstall does): a container with `--cleanup` must leave
the node clean and keep running. The Pods' service-account tokens are the test API server's identities
for their ServiceAccounts, so every Node write they make is recorded as theirs; at the end those writes
are replayed through the admission policies of the first manifests (check-admission-policies.py --replay).

Prints one `ok` or `FAIL` line per container, one for the replay, and `N passed, N failed`; exits 1 on
any failure.

usage: check-containers.py run --rendered R [--rendered R2]... --rootfs DIR --image-config JSON --apiserver BIN --work DIR
       check-containers.py exec SPEC.json        (internal: becomes the container's first process)
"""
import argparse
import ctypes
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import yaml

# Linux capability numbers (linux/capability.h), in order.
CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE"]
# containerd's default set (pkg/oci DefaultCapabilities), for a container that is not privileged.
CONTAINERD_DEFAULT = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                      "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]
# runc's defaults from containerd's spec for a container that is not privileged.
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# The devices every container gets (runc's default devices).
STANDARD_DEVICES = ["null", "zero", "full", "random", "urandom", "tty"]
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# What the agent writes to its Node (the controller's keys stay until `wgmesh uninstall`).
AGENT_ANNOTATIONS = ["wgmesh.dev/" + k for k in ("enrollment-key", "applied-key-generation", "applied-peers",
                                                 "unencrypted-drops", "cluster-cidrs", "strict")]
POD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"}


def last_cap():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return min(int(f.read()), len(CAPS) - 1)


def all_caps():
    """Every capability this process may give (a privileged container's set; this host may lack some)."""
    with open("/proc/self/status") as f:
        bounding = int(next(line.split()[1] for line in f if line.startswith("CapBnd:")), 16)
    return [c for n, c in enumerate(CAPS[:last_cap() + 1]) if bounding >> n & 1]


class ConfigError(Exception):
    """What the kubelet would refuse (CreateContainerConfigError) or this check cannot model."""


def expand(text, env):
    """Kubernetes' $(VAR) expansion: $$ is a $, an undefined $(VAR) stays as written."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if text[i + 1] == "(":
                j = text.find(")", i + 2)
                if j != -1:
                    name = text[i + 2:j]
                    out.append(env[name] if name in env else text[i:j + 1])
                    i = j + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def passwd(rootfs):
    users = {}
    try:
        with open(os.path.join(rootfs, "etc/passwd")) as f:
            for line in f:
                p = line.rstrip("\n").split(":")
                if len(p) >= 7:
                    users[p[0]] = {"uid": int(p[2]), "gid": int(p[3]), "home": p[5]}
    except FileNotFoundError:
        pass
    return users


def image_user(spec, users):
    """(uid, gid or None) of the image config's User ("uid", "uid:gid", "name", "name:group")."""
    user, _, group = (spec or "0").partition(":")

    def number(v, what):
        if v.isdigit():
            return int(v)
        if what == "user" and v in users:
            return users[v]["uid"]
        raise ConfigError(f"the image's user {spec!r} is not numeric and not in its /etc/passwd")
    uid = number(user, "user")
    gid = int(group) if group.isdigit() else None
    return uid, gid


class Pod:
    def __init__(self, obj, configmaps, node, index):
        self.kind = obj["kind"]
        self.name = obj["metadata"]["name"]
        self.namespace = obj["metadata"].get("namespace", "default")
        self.spec = obj["spec"]["template"]["spec"]
        suffix = f"{index:05x}"[-5:]
        self.pod_name = f"{self.name}-{suffix}" if self.kind == "DaemonSet" else f"{self.name}-6c8d9f7b54-{suffix}"
        self.configmaps = configmaps
        self.node = node
        self.sc = self.spec.get("securityContext") or {}
        self.volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        self.host_network = bool(self.spec.get("hostNetwork"))

    def field(self, path):
        values = {"spec.nodeName": self.node["name"], "metadata.name": self.pod_name,
                  "metadata.namespace": self.namespace, "status.hostIP": self.node["ip"],
                  "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
                  "status.podIP": self.node["ip"] if self.host_network else None}
        if values.get(path) is None:
            raise ConfigError(f"fieldRef {path} is not modelled by this check")
        return values[path]

    def configmap_key(self, ref):
        cm = self.configmaps.get((self.namespace, ref["name"]))
        if cm is None or ref["key"] not in (cm.get("data") or {}):
            if ref.get("optional"):
                return None
            raise ConfigError(f"configMapKeyRef {ref['name']}/{ref['key']}: no such ConfigMap key in the manifests")
        return str(cm["data"][ref["key"]])


def container_spec(pod, c, init, image_config, rootfs, work, api):
    """Everything the exec stage needs for one container, as the kubelet and containerd would compute it."""
    cfg = image_config.get("config") or {}
    users = passwd(rootfs)
    csc = c.get("securityContext") or {}
    psc = pod.sc

    def pick(key):
        return csc[key] if key in csc else psc.get(key)

    run_as_user, run_as_group = pick("runAsUser"), pick("runAsGroup")
    if run_as_user is not None:
        uid = int(run_as_user)
        gid = next((u["gid"] for u in users.values() if u["uid"] == uid), 0)
    else:
        if pick("runAsNonRoot") and not (cfg.get("User") or "0").partition(":")[0].isdigit():
            raise ConfigError(f"image has non-numeric user ({cfg.get('User')}), cannot verify user is non-root (runAsNonRoot)")
        uid, gid = image_user(cfg.get("User"), users)
        if gid is None:
            gid = next((u["gid"] for u in users.values() if u["uid"] == uid), 0)
    if run_as_group is not None:
        gid = int(run_as_group)
    if pick("runAsNonRoot") and uid == 0:
        raise ConfigError("container's runAsUser breaks non-root policy (runAsNonRoot and uid 0)")
    groups = sorted({int(g) for g in psc.get("supplementalGroups", [])} | ({int(psc["fsGroup"])} if "fsGroup" in psc else set()))

    privileged = bool(csc.get("privileged"))
    ape = csc.get("allowPrivilegeEscalation")
    caps_cfg = csc.get("capabilities") or {}
    if privileged and ape is False:
        raise ConfigError("cannot set allowPrivilegeEscalation to false and privileged to true (API validation)")
    if privileged:
        caps = all_caps()
    else:
        drop = {d.upper().removeprefix("CAP_") for d in caps_cfg.get("drop", [])}
        add = {a.upper().removeprefix("CAP_") for a in caps_cfg.get("add", [])}
        caps = [] if "ALL" in drop else [x for x in CONTAINERD_DEFAULT if x not in drop]
        if "ALL" in add:
            caps = all_caps()
        else:
            for a in sorted(add):
                if a not in CAPS:
                    raise ConfigError(f"unknown capability {a}")
                if a not in caps:
                    caps.append(a)
    # no_new_privs: set only when allowPrivilegeEscalation is false (the kubelet's default lets it escalate).
    nnp = ape is False

    # Environment: the image's, then the kubelet's (service links, HOSTNAME), then the manifest's.
    env = {}
    for kv in cfg.get("Env") or []:
        k, _, v = kv.partition("=")
        env[k] = v
    kube = {"KUBERNETES_SERVICE_HOST": api["host"], "KUBERNETES_SERVICE_PORT": str(api["port"]),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(api["port"]),
            "KUBERNETES_PORT": f"tcp://{api['host']}:{api['port']}",
            f"KUBERNETES_PORT_{api['port']}_TCP": f"tcp://{api['host']}:{api['port']}",
            f"KUBERNETES_PORT_{api['port']}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{api['port']}_TCP_PORT": str(api["port"]),
            f"KUBERNETES_PORT_{api['port']}_TCP_ADDR": api["host"]}
    declared = dict(kube)
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            cm = pod.configmaps.get((pod.namespace, src["configMapRef"]["name"]))
            if cm is None:
                if src["configMapRef"].get("optional"):
                    continue
                raise ConfigError(f"envFrom configMapRef {src['configMapRef']['name']}: no such ConfigMap")
            for k, v in (cm.get("data") or {}).items():
                declared[src.get("prefix", "") + k] = str(v)
        else:
            raise ConfigError(f"envFrom {list(src)} is not modelled by this check")
    for e in c.get("env", []):
        if "valueFrom" in e:
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                value = pod.field(vf["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in vf:
                value = pod.configmap_key(vf["configMapKeyRef"])
                if value is None:
                    continue
            else:
                raise ConfigError(f"env {e['name']}: valueFrom {list(vf)} is not modelled by this check")
        else:
            value = expand(str(e.get("value", "")), declared)
        declared[e["name"]] = value
    env.update(declared)
    hostname = pod.node["name"] if pod.host_network else pod.pod_name
    env.setdefault("HOSTNAME", hostname)
    if "HOME" not in env:
        env["HOME"] = next((u["home"] for u in users.values() if u["uid"] == uid), "/")

    if c.get("command"):
        argv = list(c["command"]) + list(c.get("args", []))
    else:
        argv = list(cfg.get("Entrypoint") or []) + list(c["args"] if "args" in c else (cfg.get("Cmd") or []))
    if not argv:
        raise ConfigError("no command: neither the container nor the image gives one")
    # The kubelet expands $(VAR) with the variables it knows: the manifest's and its own, not the image's.
    argv = [expand(a, declared) for a in argv]

    # Mounts, after the kubelet's own files.
    pod_dir = os.path.join(work, "pods", pod.pod_name)
    mounts = [{"source": os.path.join(pod_dir, "etc-hosts"), "dest": "/etc/hosts", "ro": False},
              {"source": os.path.join(pod_dir, "etc-hostname"), "dest": "/etc/hostname", "ro": False},
              {"source": os.path.join(pod_dir, "resolv.conf"), "dest": "/etc/resolv.conf", "ro": False},
              {"source": os.path.join(pod_dir, "containers", c["name"], "termination-log"),
               "dest": c.get("terminationMessagePath", "/dev/termination-log"), "ro": False}]
    for m in c.get("volumeMounts", []):
        vol = pod.volumes.get(m["name"])
        if vol is None:
            raise ConfigError(f"volumeMount {m['name']}: no such volume in the Pod")
        source = volume_source(pod, vol, pod_dir)
        if m.get("subPath"):
            source = os.path.join(source, m["subPath"])
            if not os.path.lexists(source):
                os.makedirs(source, exist_ok=True)
        mounts.append({"source": source, "dest": m["mountPath"], "ro": bool(m.get("readOnly"))})
    automount = pod.spec.get("automountServiceAccountToken", True)
    if automount and not any(m["dest"].rstrip("/") == SERVICE_ACCOUNT_DIR for m in mounts):
        mounts.append({"source": os.path.join(pod_dir, "serviceaccount"), "dest": SERVICE_ACCOUNT_DIR, "ro": True})

    cdir = os.path.join(pod_dir, "containers", c["name"])
    return {
        "pod": pod.pod_name, "name": c["name"], "init": init,
        "uid": uid, "gid": gid, "groups": groups, "caps": caps, "privileged": privileged, "nnp": nnp,
        "ro_root": bool(csc.get("readOnlyRootFilesystem")),
        "env": [f"{k}={v}" for k, v in env.items()], "argv": argv,
        "cwd": c.get("workingDir") or cfg.get("WorkingDir") or "/",
        "mounts": mounts, "rootfs": rootfs,
        "upper": os.path.join(cdir, "upper"), "overlay_work": os.path.join(cdir, "work"), "root": os.path.join(cdir, "root"),
        "log": os.path.join(cdir, "log"),
    }


def volume_source(pod, vol, pod_dir):
    node_root = pod.node["root"]
    if "hostPath" in vol:
        hp = vol["hostPath"]
        path, kind = hp["path"], hp.get("type", "")
        # The node's devices are the host's; every other host path is a folder of the check's stand-in node.
        source = path if path.startswith("/dev/") else os.path.join(node_root, path.lstrip("/"))
        if kind == "DirectoryOrCreate":
            os.makedirs(source, mode=0o755, exist_ok=True)
        elif kind == "FileOrCreate":
            os.makedirs(os.path.dirname(source), exist_ok=True)
            if not os.path.exists(source):
                open(source, "a").close()
        elif kind:
            tests = {"Directory": stat.S_ISDIR, "File": stat.S_ISREG, "Socket": stat.S_ISSOCK,
                     "CharDevice": stat.S_ISCHR, "BlockDevice": stat.S_ISBLK}
            if kind not in tests:
                raise ConfigError(f"hostPath type {kind} is not modelled by this check")
            try:
                ok = tests[kind](os.stat(source).st_mode)
            except FileNotFoundError:
                ok = False
            if not ok:
                raise ConfigError(f"hostPath type check failed: {path} is not a {kind}")
        elif not os.path.exists(source):
            os.makedirs(source, mode=0o755)
        return source
    if "emptyDir" in vol:
        source = os.path.join(pod_dir, "volumes", vol["name"])
        os.makedirs(source, mode=0o777, exist_ok=True)
        os.chmod(source, 0o777)
        return source
    if "configMap" in vol:
        cm = pod.configmaps.get((pod.namespace, vol["configMap"]["name"]))
        if cm is None:
            raise ConfigError(f"volume {vol['name']}: no ConfigMap {vol['configMap']['name']} in the manifests")
        source = os.path.join(pod_dir, "volumes", vol["name"])
        os.makedirs(source, exist_ok=True)
        items = vol["configMap"].get("items") or [{"key": k, "path": k} for k in (cm.get("data") or {})]
        for it in items:
            p = os.path.join(source, it["path"])
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(str(cm["data"][it["key"]]))
            os.chmod(p, it.get("mode", vol["configMap"].get("defaultMode", 0o644)))
        return source
    raise ConfigError(f"volume {vol['name']}: {[k for k in vol if k != 'name']} is not modelled by this check")


def prepare_pod(pod, specs, work, api):
    """The kubelet's per-Pod files: /etc/hosts, /etc/hostname, resolv.conf, the service-account folder."""
    pod_dir = os.path.join(work, "pods", pod.pod_name)
    os.makedirs(pod_dir, exist_ok=True)
    hostname = pod.node["name"] if pod.host_network else pod.pod_name
    with open(os.path.join(pod_dir, "etc-hosts"), "w") as f:
        f.write(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{pod.node['ip']}\t{pod.node['name']}\n")
    with open(os.path.join(pod_dir, "etc-hostname"), "w") as f:
        f.write(hostname + "\n")
    with open(os.path.join(pod_dir, "resolv.conf"), "w") as f:
        # ClusterFirst(WithHostNet): the cluster DNS, which this node has no route to.
        f.write(f"search {pod.namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")
    sa = os.path.join(pod_dir, "serviceaccount")
    os.makedirs(sa, exist_ok=True)
    account = pod.spec.get("serviceAccountName", "default")
    token = api["tokens"].get(account, f"wgmesh-check.{pod.namespace}.{account}.{pod.pod_name}")
    for name, content in (("token", token),
                          ("ca.crt", open(api["ca"]).read()), ("namespace", pod.namespace)):
        with open(os.path.join(sa, name), "w") as f:
            f.write(content)
        os.chmod(os.path.join(sa, name), 0o644)
    # The kubelet gives the token to the containers' common non-root user, mode 0600, when they all have one.
    uids = {s["uid"] for s in specs}
    if len(uids) == 1 and 0 not in uids and "fsGroup" not in pod.sc:
        os.chown(os.path.join(sa, "token"), uids.pop(), -1)
        os.chmod(os.path.join(sa, "token"), 0o600)
    for s in specs:
        d = os.path.dirname(s["log"])
        os.makedirs(s["upper"], exist_ok=True)
        os.makedirs(s["overlay_work"], exist_ok=True)
        os.makedirs(s["root"], exist_ok=True)
        open(os.path.join(d, "termination-log"), "a").close()
        os.chmod(os.path.join(d, "termination-log"), 0o666)


# ---------------------------------------------------------------------------------------------------
# The exec stage: PID 1 of a fresh mount, PID and IPC namespace, in the node's network namespace.

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_STRICTATIME = 32, 4096, 16384, 1 << 18, 1 << 24
PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 8, 24, 38, 47, 4


def exec_container(spec_path):
    with open(spec_path) as f:
        s = json.load(f)
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, data=None):
        if libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                      ctypes.c_ulong(flags), data.encode() if data else None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mount {source} on {target} ({fstype}, {data}): {os.strerror(e)}")

    def bind(source, target, ro=False, rec=True, extra=0):
        mount(source, target, None, MS_BIND | (MS_REC if rec else 0))
        if ro or extra:
            mount(None, target, None, MS_REMOUNT | MS_BIND | (MS_RDONLY if ro else 0) | extra)

    root = s["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("overlay", root, "overlay", 0, f"lowerdir={s['rootfs']},upperdir={s['upper']},workdir={s['overlay_work']}")

    def inside(path):
        """path within root, symlinks resolved within root (as runc's securejoin)."""
        parts, cur, hops = [p for p in path.split("/") if p], "", 0
        while parts:
            p = parts.pop(0)
            if p in ("", "."):
                continue
            if p == "..":
                cur = os.path.dirname(cur)
                continue
            nxt = os.path.join(cur, p)
            full = os.path.join(root, nxt)
            if os.path.islink(full):
                hops += 1
                if hops > 40:
                    raise OSError(f"too many symlinks under {path}")
                target = os.readlink(full)
                if target.startswith("/"):
                    cur = ""
                parts = [x for x in target.split("/") if x] + parts
                continue
            cur = nxt
        return os.path.join(root, cur)

    def mountpoint(path, is_dir):
        t = inside(path)
        if is_dir:
            os.makedirs(t, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(t), exist_ok=True)
            if not os.path.lexists(t):
                open(t, "a").close()
        return t

    priv = s["privileged"]
    # /proc of the new PID namespace; /dev; /sys.
    mount("proc", mountpoint("/proc", True), "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV)
    dev = mountpoint("/dev", True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    devices = []
    if priv:
        for folder, dirs, files in os.walk("/dev"):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in ("/dev/pts", "/dev/shm", "/dev/mqueue")]
            devices += [os.path.join(folder, f) for f in files if os.path.join(folder, f) != "/dev/ptmx"]
    else:
        devices = ["/dev/" + d for d in STANDARD_DEVICES]
    for d in devices:
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            continue
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            t = os.path.join(dev, d[len("/dev/"):])
            os.makedirs(os.path.dirname(t), exist_ok=True)
            os.mknod(t, st.st_mode, st.st_rdev)
            os.chmod(t, stat.S_IMODE(st.st_mode) if priv else 0o666)
            os.chown(t, st.st_uid if priv else 0, st.st_gid if priv else 0)
    os.makedirs(os.path.join(dev, "pts"), exist_ok=True)
    mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.makedirs(os.path.join(dev, "shm"), exist_ok=True)
    mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k")
    os.makedirs(os.path.join(dev, "mqueue"), exist_ok=True)
    mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
        os.symlink(target, os.path.join(dev, name))
    mount("sysfs", mountpoint("/sys", True), "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | (0 if priv else MS_RDONLY))

    # The kubelet's mounts and the volumes.
    for m in s["mounts"]:
        st = os.stat(m["source"])
        bind(m["source"], mountpoint(m["dest"], stat.S_ISDIR(st.st_mode)), ro=m["ro"])

    if not priv:
        for p in READONLY:
            t = inside(p)
            if os.path.exists(t):
                bind(t, t, ro=True, extra=MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for p in MASKED:
            t = inside(p)
            if os.path.isdir(t):
                mount("tmpfs", t, "tmpfs", MS_RDONLY)
            elif os.path.exists(t):
                bind(os.path.join(dev, "null"), t, rec=False)
    if s["ro_root"]:
        mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY)

    os.chroot(root)
    os.chdir(s["cwd"])
    env = dict(kv.split("=", 1) for kv in s["env"])
    program = s["argv"][0]
    if "/" not in program:
        found = shutil.which(program, path=env.get("PATH", "/usr/bin:/bin"))
        if not found:
            raise OSError(f"exec: {program!r}: executable file not found in $PATH")
        program = found

    # Capabilities: the bounding set; then uid and gids keeping them; then P = E = the set, no inheritable
    # and no ambient ones. execve keeps them for uid 0 only.
    wanted = {CAPS.index(c) for c in s["caps"]}
    for n in range(last_cap() + 1):
        if n not in wanted and libc.prctl(PR_CAPBSET_DROP, n, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {CAPS[n]}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups(s["groups"])
    os.setresgid(s["gid"], s["gid"], s["gid"])
    os.setresuid(s["uid"], s["uid"], s["uid"])

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
    mask = sum(1 << n for n in wanted)
    data = (Data * 2)(Data(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0), Data(mask >> 32, mask >> 32, 0))
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
    if s["nnp"] and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    os.execve(program, s["argv"], env)


# ---------------------------------------------------------------------------------------------------
# The kubelet's side: start, wait, probe, stop.

def sh(*argv, **kw):
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kw)


class Container:
    def __init__(self, spec, netns, python, script):
        self.spec = spec
        self.where = f"{spec['pod']} {'init ' if spec['init'] else ''}{spec['name']}"
        spec_path = os.path.join(os.path.dirname(spec["log"]), "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f, indent=1)
        self.log = open(spec["log"], "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={netns}", "unshare", "--mount", "--pid", "--ipc", "--fork", "--kill-child",
             python, script, "exec", spec_path],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def init_pid(self):
        """The container's first process (unshare's child), or None."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = f.read().split()
            return int(kids[0]) if kids else None
        except (FileNotFoundError, ProcessLookupError):
            return None

    def status(self):
        """uid, CapEff, CapBnd and NoNewPrivs of the running container process, as the kernel reports them."""
        pid = self.init_pid()
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except FileNotFoundError:
            return None

        def caps(v):
            n = int(v, 16)
            return [CAPS[i] for i in range(len(CAPS)) if n >> i & 1]
        return {"uid": fields["Uid"].split()[0], "gid": fields["Gid"].split()[0], "eff": caps(fields["CapEff"]),
                "bnd": caps(fields["CapBnd"]), "nnp": fields.get("NoNewPrivs", "0").strip() == "1"}

    def tail(self, n=6):
        with open(self.spec["log"], "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return [line for line in lines if line.strip()][-n:]

    def stop(self, grace=10):
        if self.proc.poll() is None:
            pid = self.init_pid()
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                # unshare --kill-child: its child, and with it the container's PID namespace, dies with it.
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def describe(spec, live=None):
    caps = "all" if spec["privileged"] else (",".join(spec["caps"]) or "none")
    text = f"uid {spec['uid']} gid {spec['gid']}, bounding caps {caps}"
    if live:
        eff = "all" if live["eff"] == all_caps() else (",".join(live["eff"]) or "none")
        text = f"uid {live['uid']} gid {live['gid']}, effective caps {eff}"
    flags = [f for f, on in (("privileged", spec["privileged"]), ("no_new_privs", spec["nnp"]),
                             ("read-only root", spec["ro_root"])) if on]
    return text + (", " + ", ".join(flags) if flags else "")


def probe(netns, ip, c, kind):
    p = c.get(kind) or {}
    get = p.get("httpGet")
    if not get:
        return None
    port = get["port"]
    if isinstance(port, str) and not port.isdigit():
        port = next(x["containerPort"] for x in c.get("ports", []) if x.get("name") == port)
    url = f"{get.get('scheme', 'HTTP').lower()}://{ip}:{port}{get.get('path', '/')}"
    r = subprocess.run(["nsenter", f"--net={netns}", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "--max-time", str(p.get("timeoutSeconds", 1) + 1), url], capture_output=True, text=True)
    return url, r.stdout.strip()


def run(args):
    script = os.path.abspath(__file__)
    python = sys.executable
    work = os.path.abspath(args.work)
    with open(args.image_config) as f:
        image_config = json.load(f)
    phases, configmaps = [], {}
    for rendered in args.rendered:
        docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
        # A later phase reads the ConfigMaps of the earlier ones (the cleanup reads the installed wgmesh-config).
        configmaps.update({(d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d
                           for d in docs if d["kind"] == "ConfigMap"})
        phases.append({"name": rendered, "docs": docs, "workloads": [d for d in docs if d["kind"] in POD_KINDS]})
    netns_name = f"wgmesh-cc-{os.getpid()}"
    netns = f"/run/netns/{netns_name}"
    node = {"name": "wgmesh-check-node", "ip": "192.0.2.1", "root": os.path.join(work, "node")}
    api = {"host": "127.0.0.1", "port": 6443, "ca": os.path.join(work, "apiserver-ca.crt"),
           # TestAPIServerTool's identities: the service accounts' tokens as the API server knows them.
           "tokens": {"wgmesh-controller": "test-controller", "wgmesh-agent": f"test-agent-{node['name']}"}}
    writes = os.path.join(work, "writes.jsonl")
    os.makedirs(node["root"], exist_ok=True)
    results, started, apiserver = [], [], None

    def report(ok, where, detail, tail=()):
        results.append(ok)
        print(f"check-containers: {'ok  ' if ok else 'FAIL'} {where}: {detail}", flush=True)
        for line in tail:
            print(f"check-containers:        | {line}", flush=True)

    try:
        # The node's host network: loopback, and the node's address on eth0, a veth whose peer is in the same
        # namespace (the kernel may lack the dummy device): nothing leaves it.
        sh("ip", "netns", "add", netns_name)
        sh("ip", "-n", netns_name, "link", "set", "lo", "up")
        sh("ip", "-n", netns_name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
        sh("ip", "-n", netns_name, "addr", "add", f"{node['ip']}/24", "dev", "eth0")
        sh("ip", "-n", netns_name, "link", "set", "eth0-peer", "up")
        sh("ip", "-n", netns_name, "link", "set", "eth0", "up")
        # A node that routes nothing yet: forwarding off, for the init container to turn on.
        sh("ip", "netns", "exec", netns_name, "sh", "-c",
           "echo 0 > /proc/sys/net/ipv4/ip_forward && echo 0 > /proc/sys/net/ipv6/conf/all/forwarding")

        # The API server, as the Pods reach it in-cluster: HTTPS on the node's loopback.
        kubeconfig = os.path.join(work, "kubeconfig")
        apilog = open(os.path.join(work, "apiserver.log"), "wb")
        # Its tokens name who writes (the Pods' service-account tokens below carry them); every Node write is
        # recorded, for the admission policies' replay at the end.
        apiserver = subprocess.Popen(["nsenter", f"--net={netns}", args.apiserver, "--tls", api["ca"], "--agents", node["name"],
                                      "--record", writes, api["host"], str(api["port"]), kubeconfig],
                                     stdout=apilog, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"https://{api['host']}:{api['port']}"

        def kapi(*curl):
            # As the test's harness (a kubelet registering its Node): recorded, not judged.
            return subprocess.run(["nsenter", f"--net={netns}", "curl", "-sf", "--cacert", api["ca"],
                                   "-H", "Authorization: Bearer test-harness", *curl], capture_output=True, text=True)
        deadline = time.monotonic() + 60
        while not (os.path.exists(api["ca"]) and kapi(f"{base}/api/v1/nodes").returncode == 0):
            if apiserver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the test API server did not start: " + open(apilog.name).read()[-2000:])
            time.sleep(0.3)
        cidr = "10.244.1.0/24"
        node_obj = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": node["name"], "labels": {"kubernetes.io/hostname": node["name"]}},
                    "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                    "status": {"addresses": [{"type": "InternalIP", "address": node["ip"]},
                                             {"type": "Hostname", "address": node["name"]}]}}
        r = kapi("-X", "POST", "-H", "Content-Type: application/json", "-d", json.dumps(node_obj), f"{base}/api/v1/nodes")
        if r.returncode != 0:
            raise RuntimeError(f"creating Node {node['name']}: curl exit {r.returncode} {r.stdout} {r.stderr}")

        def settled(c):
            """(done, what it left): a cleanup container is done when the node holds nothing of wgmesh's."""
            if "--cleanup" not in c.get("args", []):
                return True, "running"
            left = []
            if subprocess.run(["ip", "-n", netns_name, "link", "show", "wgmesh0"], capture_output=True).returncode == 0:
                left.append("interface wgmesh0")
            if subprocess.run(["ip", "netns", "exec", netns_name, "nft", "list", "table", "inet", "wgmesh"],
                              capture_output=True).returncode == 0:
                left.append("nftables table inet wgmesh")
            for f in ("etc/cni/net.d/10-wgmesh.conflist", "var/lib/wgmesh/enrollment.key"):
                if os.path.exists(os.path.join(node["root"], f)):
                    left.append("/" + f)
            r = kapi(f"{base}/api/v1/nodes/{node['name']}")
            obj = json.loads(r.stdout) if r.returncode == 0 else {}
            notes = obj.get("metadata", {}).get("annotations") or {}
            left += [k for k in AGENT_ANNOTATIONS if k in notes]
            if any(x.get("type") == "WireGuardMeshReady" for x in (obj.get("status", {}).get("conditions") or [])):
                left.append("condition WireGuardMeshReady")
            if r.returncode != 0:
                left.append(f"(Node unreadable: curl exit {r.returncode})")
            return (not left, "the node clean: no wgmesh0, nftables table, CNI file, enrollment key, agent annotation "
                    "or condition" if not left else "left: " + ", ".join(left))

        def run_phase(workloads, pod_index):
            """Every Pod's containers, each as the kubelet makes it: init containers one after another, then the
            main ones together. Returns the main containers still running."""
            pods, mains = [], []
            for i, obj in enumerate(workloads):
                pod = Pod(obj, configmaps, node, 0x4f1a0 + (pod_index + i) * 0x1b3)
                entries = []
                ordered = [(True, c) for c in pod.spec.get("initContainers", [])] + [(False, c) for c in pod.spec.get("containers", [])]
                for init, c in ordered:
                    try:
                        entries.append((init, c, container_spec(pod, c, init, image_config, args.rootfs, work, api)))
                    except ConfigError as e:
                        entries.append((init, c, e))
                prepare_pod(pod, [s for _, _, s in entries if isinstance(s, dict)], work, api)
                pods.append((pod, entries))

            for pod, entries in pods:
                where_pod = f"{pod.kind}/{pod.name}"
                blocked = None
                for init, c, s in entries:
                    where = f"{where_pod} {'init ' if init else ''}{c['name']}"
                    if isinstance(s, ConfigError):
                        report(False, where, f"the kubelet would not start it: {s}")
                        blocked = blocked or c["name"]
                        continue
                    if blocked:
                        report(False, where, f"not started: container {blocked} of its Pod failed")
                        continue
                    if init:
                        k = Container(s, netns, python, script)
                        started.append(k)
                        try:
                            rc = k.proc.wait(args.init_timeout)
                        except subprocess.TimeoutExpired:
                            k.stop(grace=2)
                            report(False, where, f"did not exit within {args.init_timeout}s ({describe(s)})", k.tail())
                            blocked = c["name"]
                            continue
                        k.log.close()
                        if rc == 0:
                            report(True, where, f"exited 0 in {time.monotonic() - k.started:.1f}s ({describe(s)})"
                                   + evidence(pod, c, node, netns_name))
                        else:
                            report(False, where, f"exited {rc} ({describe(s)}); its log:", k.tail())
                            blocked = c["name"]
                    else:
                        mains.append((pod, c, s))

            # The main containers, all running together as on a node; each must stay up, and pass its probes.
            running = []
            for pod, c, s in mains:
                k = Container(s, netns, python, script)
                started.append(k)
                running.append((pod, c, s, k))
            deadline = time.monotonic() + args.ready_timeout
            pending = {id(k) for _, _, _, k in running}
            ready_at, probes = {}, {}
            while pending and time.monotonic() < deadline:
                for pod, c, s, k in running:
                    if id(k) not in pending:
                        continue
                    if k.proc.poll() is not None:
                        pending.discard(id(k))
                        continue
                    result = probe(netns, node["ip"], c, "readinessProbe")
                    probes[id(k)] = result
                    if result is None:
                        # No probe: running for a while, and done with what it is for (the cleanup: a clean node).
                        if time.monotonic() - k.started > 5 and settled(c)[0]:
                            ready_at[id(k)] = time.monotonic() - k.started
                            pending.discard(id(k))
                    elif result[1] == "200":
                        ready_at[id(k)] = time.monotonic() - k.started
                        pending.discard(id(k))
                time.sleep(0.5)
            for pod, c, s, k in running:
                where = f"{pod.kind}/{pod.name} {c['name']}"
                if k.proc.poll() is not None:
                    report(False, where, f"exited {k.proc.returncode} ({describe(s)}); its log:", k.tail(10))
                    continue
                live = k.status()
                if id(k) not in ready_at:
                    if probes.get(id(k)):
                        url, code = probes[id(k)]
                        why = f"not ready within {args.ready_timeout}s: {url} answered {code or 'nothing'}"
                    else:
                        why = f"not done within {args.ready_timeout}s: {settled(c)[1]}"
                    report(False, where, f"{why} ({describe(s, live)}); its log:", k.tail(10))
                    continue
                live_probe = probe(netns, node["ip"], c, "livenessProbe")
                if live_probe and live_probe[1] != "200":
                    report(False, where, f"ready, but the liveness probe {live_probe[0]} answered {live_probe[1]}", k.tail())
                    continue
                mismatch = live and (int(live["uid"]) != s["uid"] or sorted(live["bnd"]) != sorted(s["caps"]) or live["nnp"] != s["nnp"])
                if mismatch:
                    report(False, where, f"runs with {live}, not as computed ({describe(s)})")
                    continue
                what = f"ready after {ready_at[id(k)]:.1f}s" if probes.get(id(k)) else f"running ({settled(c)[1]})"
                if probes.get(id(k)):
                    what += f" ({probes[id(k)][0]} 200)"
                report(True, where, f"{what}; {describe(s, live)}" + evidence(pod, c, node, netns_name, kapi, base))
            return [(pod, c, s, k) for pod, c, s, k in running if k.proc.poll() is None]

        # The phases: manifests/ installed; then, where given, what is applied next (the cleanup DaemonSet)
        # after the Deployments and DaemonSets before it are deleted, as docs/operations.md's uninstall does.
        running, count = [], 0
        for n, rendered in enumerate(phases):
            if n > 0:
                names = sorted({f"{pod.kind}/{pod.name}" for pod, _, _, _ in running})
                print(f"check-containers: deleting {', '.join(names) or 'nothing'}; then applying {os.path.basename(rendered['name'])}",
                      flush=True)
                for _, _, _, k in running:
                    k.stop()
            running = run_phase(rendered["workloads"], count)
            count += len(rendered["workloads"])
    except Exception as e:  # noqa: BLE001 - the check reports whatever stopped it
        report(False, "check", f"{type(e).__name__}: {e}")
    finally:
        for k in reversed(started):
            k.stop()
        if apiserver is not None:
            apiserver.terminate()
            try:
                apiserver.wait(10)
            except subprocess.TimeoutExpired:
                apiserver.kill()
                apiserver.wait()
        subprocess.run(["ip", "netns", "del", netns_name], capture_output=True)
    if os.path.exists(writes) and any(w["kind"] == "ValidatingAdmissionPolicy" for w in phases[0]["docs"]):
        # What the containers wrote to their Node, as their service accounts, through the admission policies.
        r = subprocess.run([python, os.path.join(os.path.dirname(script), "check-admission-policies.py"), "--replay",
                            phases[0]["name"], writes], capture_output=True, text=True)
        lines = r.stdout.strip().splitlines()
        summary = next((line for line in lines if line.startswith("admission replay:")), r.stderr.strip()[-300:])
        who = "; ".join(" ".join(line.split()[1:]) for line in lines if " writes by " in line)
        report(r.returncode == 0, "admission policies", f"{summary} ({who}; check-admission-policies.py --replay)",
               [line for line in lines if line.startswith(("FAIL", "replay: "))] if r.returncode else ())
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print(f"check-containers: {passed} passed, {failed} failed", flush=True)
    return 1 if failed or not results else 0


def evidence(pod, c, node, netns_name, kapi=None, base=None):
    """What the container's work left on the stand-in node, for its ok line."""
    args = " ".join(c.get("args", []))
    if "--forwarding-only" in args:
        v4 = sh("ip", "netns", "exec", netns_name, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip()
        v6 = sh("ip", "netns", "exec", netns_name, "cat", "/proc/sys/net/ipv6/conf/all/forwarding").stdout.strip()
        return f"; the node's forwarding: IPv4 {v4}, IPv6 {v6}"
    if "install-cni" in args:
        d = os.path.join(node["root"], "opt/cni/bin")
        return f"; the node's /opt/cni/bin: {' '.join(sorted(os.listdir(d)))}" if os.path.isdir(d) else ""
    if kapi is not None and c.get("args") and c["args"][0] in ("agent", "controller") and "--cleanup" not in c["args"]:
        r = kapi(f"{base}/api/v1/nodes/{node['name']}")
        notes = (json.loads(r.stdout).get("metadata", {}).get("annotations") or {}) if r.returncode == 0 else {}
        if c["args"][0] == "controller":
            return (f"; Node {node['name']} has wgmesh.dev/pod-cidrs={notes.get('wgmesh.dev/pod-cidrs', '(none)')}, "
                    f"public-key {'set' if notes.get('wgmesh.dev/public-key') else '(none)'}")
        conf = os.path.join(node["root"], "etc/cni/net.d/10-wgmesh.conflist")
        return (f"; applied-key-generation={notes.get('wgmesh.dev/applied-key-generation', '(none)')}, "
                f"{'10-wgmesh.conflist written' if os.path.exists(conf) else 'no conflist'}")
    return ""


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "exec":
        try:
            exec_container(sys.argv[2])
        except Exception as e:  # noqa: BLE001 - as runc reports a failed container start
            print(f"container start failed: {e}", file=sys.stderr, flush=True)
            sys.exit(128)
        return
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["run"])
    p.add_argument("--rendered", required=True, action="append",
                   help="rendered manifests; given again, applied after the earlier ones' workloads are deleted")
    p.add_argument("--rootfs", required=True)
    p.add_argument("--image-config", required=True)
    p.add_argument("--apiserver", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--init-timeout", type=int, default=60)
    p.add_argument("--ready-timeout", type=int, default=120)
    sys.exit(run(p.parse_args()))


if __name__ == "__main__":
    main()
