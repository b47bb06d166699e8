#!/usr/bin/env bash
# One-command setup of viewseg on a fresh Debian/Ubuntu x86_64 machine (Python 3.11):
#   .venv with pinned PyTorch + ROS 2 Kilted wheels, the interface packages in interfaces/
#   built into the venv prefix, the ROS 2 launch stack when its vendored files are present,
#   the project installed editable and registered in the venv's ament index (as
#   `colcon build --symlink-install` would), and a loopback smoke check.
# Idempotent: every step is skipped when the inputs it depends on are unchanged
# (stamps in .venv/.viewseg-stamps), so a second run takes seconds.
#
# Usage: scripts/setup.sh [--force]        env: PYTHON (default python3), VENV (default .venv),
#   VIEWSEG_LAUNCH_VENDOR (default ../shared/vendor/ros2-launch-kilted next to the repo: the
#   upstream launch/launch_ros/ros2cli wheels; set it to an empty string to skip them)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMPS="$VENV/.viewseg-stamps"
FORCE=0; [ "${1:-}" = "--force" ] && FORCE=1
t_start=$(date +%s)

say()  { echo "[setup] $*"; }
fail() { echo "[setup] ERROR: $*" >&2; exit 1; }

# A stamp holds the hash of a step's inputs; the step reruns only when they change.
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [ "$FORCE" = 0 ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# --- 0. prerequisites, each named when missing -------------------------------------
command -v "$PY" >/dev/null || fail "no '$PY' on PATH: install Python 3.11 (or set PYTHON=/path/to/python3.11)"
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "3.11" ] || fail "Python $pyver found, but the ros-kilted-* wheels need CPython 3.11 (set PYTHON=python3.11)"
[ "$(uname -m)" = "x86_64" ] || fail "ros-kilted-* wheels and torch==2.14.1 are pinned for x86_64; $(uname -m) is not supported by this script"
"$PY" -c 'import venv, ensurepip' 2>/dev/null || fail "Python has no venv/ensurepip module: apt-get install python3-venv"
"$PY" - <<'PYEOF' || fail "Python headers (Python.h) are missing: apt-get install python3-dev, or use a Python built with headers (pyenv)"
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 1)
PYEOF
missing=()
for tool in cmake g++ make; do command -v $tool >/dev/null || missing+=("$tool"); done
[ ${#missing[@]} -eq 0 ] || fail "missing build tools: ${missing[*]} (apt-get install cmake g++ make)"

# --- 1. venv + pinned wheels ----------------------------------------------------------
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
# shellcheck disable=SC1091
. "$VENV/bin/activate"
req_hash=$(hash_of requirements.txt requirements-ros.txt requirements.lock)
if stamp_ok pip "$req_hash"; then
  say "python packages up to date"
else
  say "installing pinned packages (torch is large: a minute or more on a fresh machine)"
  python -m pip install -q --upgrade 'pip==25.3' 'setuptools==80.9.0' 'wheel==0.45.1' \
    || fail "could not upgrade pip/setuptools in $VENV (is the package index reachable?)"
  python -m pip install -q -c requirements.lock -r requirements.txt \
    || fail "pip could not install requirements.txt (see the pip error above: a pinned wheel that does not exist for this Python/platform?)"
  python -m pip install -q -c requirements.lock -r requirements-ros.txt \
    || fail "pip could not install requirements-ros.txt (the ros-kilted-* wheels need CPython 3.11 on x86_64 Linux)"
  stamp_set pip "$req_hash"
fi

# --- 2. make the ROS wheels' CMake config usable on this machine ----------------------
# The wheels bake their build machine's include paths (/opt/python/cp311-...) into
# *Export.cmake files, and CMake refuses non-existent include directories.
PYINC=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$(python -c "import numpy; print(numpy.get_include())")
{ grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' --include='*.cmake' "$VENV/share" 2>/dev/null || true; } \
  | xargs -r sed -i -E \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$NPINC#g" \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PYINC#g"

# --- 3. interface packages -> venv prefix (plain cmake: no colcon, nothing to source) ---
export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
BUILD="$ROOT/build/interfaces"
build_pkg() {  # $1 = package dir; tf2_msgs must come before packages that use it
  local dir=$1 name; name=$(basename "$1")
  local h; h=$(hash_of $(find "$dir" -type f | sort) "$STAMPS/pip")
  if stamp_ok "iface-$name" "$h" && python -c "import importlib; importlib.import_module('$name')" 2>/dev/null; then
    say "interface package $name up to date"; return
  fi
  local log="$BUILD/$name.log" s; s=$(date +%s); mkdir -p "$BUILD"
  say "building interface package $name (log: $log)"
  if ! { cmake -S "$dir" -B "$BUILD/$name" -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
           -DPython3_EXECUTABLE="$VENV/bin/python" -DCMAKE_BUILD_TYPE=Release \
         && cmake --build "$BUILD/$name" -j"$(nproc)" && cmake --install "$BUILD/$name"; } >"$log" 2>&1; then
    echo "[setup] ---- last lines of $log ----" >&2; tail -n 15 "$log" >&2
    fail "building interface package $name failed (full log: $log)"
  fi
  stamp_set "iface-$name" "$h"
  say "built $name in $(( $(date +%s) - s )) s"
}
build_pkg interfaces/tf2_msgs
build_pkg interfaces/viewseg_interfaces

# --- 4. the ROS 2 launch stack: `ros2 launch/run/node/pkg` (no wheels on the index) ----------
# Third-party upstream files (pinned: their README lists the release tags), installed into the
# venv, never copied into this repository. Without them, `ros2 ...` needs a system ROS 2.
LAUNCH_VENDOR_DEFAULT="$(dirname "$ROOT")/shared/vendor/ros2-launch-kilted"
LAUNCH_VENDOR="${VIEWSEG_LAUNCH_VENDOR-$LAUNCH_VENDOR_DEFAULT}"
LAUNCH_PINS=('osrf-pycommon==2.0.2' 'argcomplete==3.7.2' 'psutil==7.2.2')  # the stack's index deps
if [ -n "$LAUNCH_VENDOR" ] && [ -d "$LAUNCH_VENDOR" ]; then
  LAUNCH_VENDOR=$(cd "$LAUNCH_VENDOR" && pwd)
  ls "$LAUNCH_VENDOR"/launch-*.whl "$LAUNCH_VENDOR"/composition_interfaces-*.tar.gz >/dev/null 2>&1 \
    || fail "$LAUNCH_VENDOR has no launch-*.whl / composition_interfaces-*.tar.gz (see its README)"
  # launch_ros imports composition_interfaces: an interface package, built like ours.
  src="$ROOT/build/vendor"; rm -rf "$src"; mkdir -p "$src"
  tar -xzf "$LAUNCH_VENDOR"/composition_interfaces-*.tar.gz -C "$src"
  build_pkg "$src/composition_interfaces"
  launch_hash=$(hash_of "$LAUNCH_VENDOR"/*.whl "$STAMPS/pip"; echo "${LAUNCH_PINS[*]}")
  if stamp_ok launch-stack "$launch_hash" && python -c 'import launch, launch_ros, ros2launch, ros2node' 2>/dev/null; then
    say "ROS 2 launch stack up to date ($LAUNCH_VENDOR)"
  else
    say "installing the ROS 2 launch stack from $LAUNCH_VENDOR"
    python -m pip install -q -c requirements.lock "${LAUNCH_PINS[@]}" \
      || fail "pip could not install ${LAUNCH_PINS[*]} (needed by the launch stack)"
    # --no-deps: upstream names its dependencies (ament_index_python, rclpy) as ROS packages,
    # which the index spells ros-kilted-*; requirements-ros.txt already installed those.
    python -m pip install -q --no-deps --force-reinstall "$LAUNCH_VENDOR"/*.whl \
      || fail "pip could not install the launch stack wheels from $LAUNCH_VENDOR"
    python -c 'import launch, launch_ros, ros2launch, ros2node' || fail "the launch stack does not import (see above)"
    stamp_set launch-stack "$launch_hash"
  fi
elif [ -n "${VIEWSEG_LAUNCH_VENDOR:-}" ]; then
  fail "VIEWSEG_LAUNCH_VENDOR=$VIEWSEG_LAUNCH_VENDOR is not a folder"
elif python -c 'import ros2launch' 2>/dev/null; then
  say "no launch stack folder ($LAUNCH_VENDOR_DEFAULT); keeping the launch stack already in $VENV"
else
  say "no ROS 2 launch stack: \`ros2 launch\` (and ros2 run/node/pkg) needs a system ROS 2 or the vendored stack in $LAUNCH_VENDOR_DEFAULT (VIEWSEG_LAUNCH_VENDOR); the launch tests skip"
fi

# --- 5. the project itself, editable ------------------------------------------------------
proj_hash=$(hash_of setup.py package.xml "$STAMPS/pip")
if stamp_ok project "$proj_hash" && python -c 'import viewseg_core, viewseg_ros' 2>/dev/null; then
  say "viewseg installed (editable)"
else
  python -m pip install -q --no-deps --no-build-isolation -e . || fail "pip install -e . failed"
  stamp_set project "$proj_hash"
fi

# --- 6. ament registration in the venv prefix, as `colcon build --symlink-install` does -------
# setup.py's data_files (ament index marker, package.xml, launch/, config/, checkpoints/) are
# symlinked into real folders under $VENV/share (ros2launch does not follow a symlinked
# launch folder), and lib/viewseg_ros/<executable> links to the console script in bin/.
# Rebuilt on every run (instant), so a new launch or config file shows up after `make setup`.
python - "$ROOT" "$VENV" <<'PYEOF' || fail "registering viewseg_ros in the ament index of $VENV failed (see above)"
import os, runpy, shutil, sys
from pathlib import Path

import setuptools

root, prefix = Path(sys.argv[1]), Path(sys.argv[2])
spec = {}
setuptools.setup = lambda **kwargs: spec.update(kwargs)  # read setup.py's arguments, build nothing
os.chdir(root)
runpy.run_path(str(root / "setup.py"), run_name="__main__")
package = spec["name"]
for folder in (prefix / "share" / package, prefix / "lib" / package):
    shutil.rmtree(folder, ignore_errors=True)
for dest, files in spec["data_files"]:
    target = prefix / dest
    target.mkdir(parents=True, exist_ok=True)
    for name in files:
        link = target / Path(name).name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(root / name)
libexec = prefix / "lib" / package
libexec.mkdir(parents=True)
for entry in spec["entry_points"]["console_scripts"]:
    script = entry.split("=")[0].strip()
    if not (prefix / "bin" / script).is_file():
        sys.exit(f"{prefix / 'bin' / script} is missing: pip install -e . did not make it")
    (libexec / script).symlink_to(Path("..", "..", "bin", script))
os.environ["AMENT_PREFIX_PATH"] = str(prefix)
from ament_index_python.packages import get_package_share_directory
assert Path(get_package_share_directory(package)) == prefix / "share" / package
print(f"[setup] {package} registered in {prefix} (share/{package}, lib/{package}: "
      f"{', '.join(sorted(p.name for p in libexec.iterdir()))})")
PYEOF
# Activation puts the venv on AMENT_PREFIX_PATH (as a colcon workspace's setup.bash does), once.
if ! grep -q '>>> viewseg: AMENT_PREFIX_PATH' "$VENV/bin/activate"; then
  cat >> "$VENV/bin/activate" <<'SHEOF'
# >>> viewseg: AMENT_PREFIX_PATH (added by scripts/setup.sh) >>>
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"; export AMENT_PREFIX_PATH ;;
esac
# <<< viewseg <<<
SHEOF
  say "activation now sets AMENT_PREFIX_PATH ($VENV/bin/activate)"
fi

# --- 7. smoke check: rclpy pub/sub on loopback, generated types, torch ------------------
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( RANDOM % 100 + 100 ))}"
timeout 60 python - <<'PYEOF' || fail "smoke check failed (see above)"
import time
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage
from viewseg_interfaces.srv import RenderView
import torch, cv2, h5py, rosbags  # noqa: F401  (import check only)
import viewseg_core, viewseg_ros  # noqa: F401

rclpy.init()
try:
    node = Node('viewseg_setup_smoke')
    got = []
    node.create_subscription(Image, 'viewseg_setup_smoke', got.append, 10)
    pub = node.create_publisher(Image, 'viewseg_setup_smoke', 10)
    t0 = time.time()
    while not got and time.time() - t0 < 10:
        pub.publish(Image(width=1, height=1, encoding='mono8', step=1, data=b'\x07'))
        rclpy.spin_once(node, timeout_sec=0.05)
    assert got and got[0].data[0] == 7, 'loopback pub/sub failed'
    RenderView.Request(); TFMessage()
finally:
    rclpy.shutdown()
print(f'[setup] smoke OK: rclpy pub/sub, tf2_msgs + viewseg_interfaces, torch {torch.__version__}')
PYEOF
say "done in $(( $(date +%s) - t_start )) s. Activate with: . .venv/bin/activate"
