"""Starts one emulated pod's container (test-only; run by `kfp_backend` as root, inside
`unshare --mount --net --fork`): builds the container's root file system from the pod spec
file given as the only argument, then execs the command in it.

The file system holds exactly what a pod of our image has: the image (this machine's system
directories, the Python installation, the project at its own path and at the image's
WORKDIR, all read-only), empty directories of its own (/tmp, the home directory, the
launcher's /minio, /gcs and /s3), and the volumes the pod spec mounts. Nothing else of the
host is visible. The network namespace has only a loopback device: a pod without egress.
With `drop_capabilities` the command runs with every capability dropped and no new
privileges, as KFP >= 2.16 runs the user container (`compiler/argocompiler/
security_context.go`: `capabilities.drop: [ALL]`, `allowPrivilegeEscalation: false`).
"""
import json
import os
import subprocess
import sys

SYSTEM_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _mount(*args):
    subprocess.run(["mount", *args], check=True)


def _bind(source, target, read_only):
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a", encoding="utf-8").close()
    _mount("--rbind", source, target)
    if read_only:
        _mount("-o", "remount,bind,ro", target)


def main(spec_path):
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    root = spec["root"]
    for name in SYSTEM_DIRS:
        host = os.path.join("/", name)
        if os.path.islink(host):
            # A second command in the same pod (Vertex AI's driver hook, then the command)
            # finds the links of the first.
            if not os.path.islink(os.path.join(root, name)):
                os.symlink(os.readlink(host), os.path.join(root, name))
        elif os.path.isdir(host):
            _bind(host, os.path.join(root, name), read_only=True)
    for name in ("proc", "dev", "sys", "tmp", "root"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    _mount("-t", "proc", "proc", os.path.join(root, "proc"))
    _bind("/dev", os.path.join(root, "dev"), read_only=False)
    _bind("/sys", os.path.join(root, "sys"), read_only=True)
    for source, target, read_only in spec["binds"]:
        _bind(source, os.path.join(root, target.lstrip("/")), read_only)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.chroot(root)
    os.chdir(spec["cwd"])
    argv = spec["argv"]
    if spec["drop_capabilities"]:
        argv = ["setpriv", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all",
                "--"] + argv
    os.execvpe(argv[0], argv, spec["env"])


if __name__ == "__main__":
    main(sys.argv[1])
