"""Build and install openpixel_ros's msg/srv interfaces into a venv made of ROS 2 PyPI wheels.

Run it with the venv's interpreter (scripts/bootstrap.sh does): the venv is taken from
sys.prefix. It

1. rewrites the Python and NumPy include paths that the wheels' exported CMake files carry
   from the machine they were built on (a manylinux image, /opt/python/cpXY-cpXY/...) to
   this interpreter's, so that CMake accepts the imported targets;
2. configures, builds and installs CMakeLists.txt with OPENPIXEL_INSTALL_PYTHON=OFF into the
   venv prefix: C/C++ typesupport libraries land in <venv>/lib (on the LD_LIBRARY_PATH that the
   ros_wheels_bootstrapper .pth sets), Python modules in site-packages/openpixel_ros/{msg,srv};
3. skips step 2 when a stamp in the venv says the same inputs were already built and installed.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_NAME = 'openpixel_ros'

# A path prefix of the manylinux build image's interpreters, e.g. /opt/python/cp311-cp311.
BUILD_MACHINE_PYTHON_PREFIX = r'/opt/python/cp\d+-cp\d+t?'
BUILD_MACHINE_PYTHON_INCLUDE = re.compile(BUILD_MACHINE_PYTHON_PREFIX + r'/include/python3\.\d+t?')
BUILD_MACHINE_NUMPY_INCLUDE = re.compile(
    BUILD_MACHINE_PYTHON_PREFIX + r'/lib/python3\.\d+t?/site-packages/numpy/(?:_core|core)/include')


def log(message):
    """Print one progress line, flushed so it interleaves with subprocess output."""
    print(f'[build_interfaces] {message}', flush=True)


def venv_cmake_files(venv):
    """Yield the CMake files installed into the venv by wheels (share/, lib/cmake/, site-packages)."""
    search_roots = [venv / 'share', venv / 'lib' / 'cmake', Path(sysconfig.get_paths()['purelib'])]
    for root in search_roots:
        if root.is_dir():
            yield from root.rglob('*.cmake')


def fix_wheel_include_paths(venv):
    """Point the wheels' build-machine include dirs at this machine's Python and NumPy headers.

    Idempotent: a rewritten file no longer contains the build-machine prefix. Returns the number
    of files changed.
    """
    import numpy  # imported here: only this step needs it, and it is a build requirement

    python_include = sysconfig.get_paths()['include']
    numpy_include = numpy.get_include()
    changed = 0
    for cmake_file in venv_cmake_files(venv):
        text = cmake_file.read_text(encoding='utf-8', errors='surrogateescape')
        if '/opt/python/' not in text:
            continue
        fixed = BUILD_MACHINE_NUMPY_INCLUDE.sub(numpy_include, text)
        fixed = BUILD_MACHINE_PYTHON_INCLUDE.sub(python_include, fixed)
        if fixed != text:
            cmake_file.write_text(fixed, encoding='utf-8', errors='surrogateescape')
            changed += 1
    return changed


def interface_inputs():
    """Files whose content decides what the interface build produces."""
    inputs = [REPO_ROOT / 'CMakeLists.txt', REPO_ROOT / 'package.xml', Path(__file__).resolve()]
    inputs += sorted((REPO_ROOT / 'msg').glob('*.msg'))
    inputs += sorted((REPO_ROOT / 'srv').glob('*.srv'))
    inputs += sorted((REPO_ROOT / 'requirements').glob('*.txt'))
    return inputs


def inputs_digest(venv):
    """SHA-256 over the input files' names and contents, the interpreter and the venv path."""
    digest = hashlib.sha256()
    digest.update(f'{sys.version}\n{venv}\n'.encode())
    for path in interface_inputs():
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b'\0')
        digest.update(path.read_bytes() + b'\0')
    return digest.hexdigest()


def installed_interfaces_present(venv):
    """True when the generated Python package and its typesupport library are in the venv."""
    site_packages = Path(sysconfig.get_paths()['purelib'])
    generated_init = site_packages / PACKAGE_NAME / 'srv' / '__init__.py'
    typesupport_library = venv / 'lib' / f'lib{PACKAGE_NAME}__rosidl_typesupport_c.so'
    return generated_init.is_file() and typesupport_library.is_file()


def build_environment(venv):
    """The environment for CMake: only the venv's ROS, never a sourced system ROS."""
    environment = dict(os.environ)
    for variable in ('CMAKE_PREFIX_PATH', 'AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH', 'PYTHONPATH'):
        environment.pop(variable, None)
    # rosidl finds the typesupport implementations through the ament resource index.
    environment['AMENT_PREFIX_PATH'] = str(venv)
    return environment


def drop_stale_cmake_cache(build_dir):
    """Remove a build dir configured for another source tree (e.g. a copied checkout)."""
    cache = build_dir / 'CMakeCache.txt'
    if not cache.is_file():
        return
    match = re.search(r'^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$', cache.read_text(), re.MULTILINE)
    if match is None or Path(match.group(1)).resolve() != REPO_ROOT:
        log(f'{build_dir} belongs to another source tree; starting it afresh')
        shutil.rmtree(build_dir)


def run_cmake_build(venv, build_dir):
    """Configure, build and install the interfaces into the venv prefix."""
    environment = build_environment(venv)
    drop_stale_cmake_cache(build_dir)
    configure = [
        'cmake', '-S', str(REPO_ROOT), '-B', str(build_dir),
        f'-DCMAKE_INSTALL_PREFIX={venv}',
        f'-DCMAKE_PREFIX_PATH={venv}',
        f'-DPython3_EXECUTABLE={venv / "bin" / "python"}',
        '-DOPENPIXEL_INSTALL_PYTHON=OFF',
        '-DBUILD_TESTING=OFF',
        '-DCMAKE_BUILD_TYPE=Release',
    ]
    jobs = str(os.cpu_count() or 1)
    steps = [
        ('configure', configure),
        ('build', ['cmake', '--build', str(build_dir), '--parallel', jobs]),
        ('install', ['cmake', '--install', str(build_dir)]),
    ]
    log_file = build_dir / 'build_interfaces.log'
    build_dir.mkdir(parents=True, exist_ok=True)
    with log_file.open('w') as log_stream:
        for step_name, command in steps:
            started = time.monotonic()
            log_stream.write(f'$ {" ".join(command)}\n')
            log_stream.flush()
            result = subprocess.run(command, env=environment, stdout=log_stream,
                                    stderr=subprocess.STDOUT, check=False)
            if result.returncode != 0:
                log_stream.flush()
                tail = log_file.read_text().splitlines()[-40:]
                sys.stderr.write('\n'.join(tail) + '\n')
                raise SystemExit(f'[build_interfaces] cmake {step_name} failed (full log: {log_file})')
            log(f'cmake {step_name}: {time.monotonic() - started:.1f} s')


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--build-dir', type=Path, default=REPO_ROOT / 'build' / 'interfaces',
                        help='CMake build directory (default: build/interfaces)')
    parser.add_argument('--force', action='store_true', help='rebuild even if the stamp is current')
    args = parser.parse_args(argv)

    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix):
        raise SystemExit('[build_interfaces] run this with a virtualenv interpreter (.venv/bin/python)')
    if shutil.which('cmake') is None:
        raise SystemExit('[build_interfaces] cmake not found on PATH')

    changed = fix_wheel_include_paths(venv)
    if changed:
        log(f'rewrote build-machine include paths in {changed} wheel CMake files')

    stamp = venv / f'.{PACKAGE_NAME}-interfaces.stamp'
    digest = inputs_digest(venv)
    if (not args.force and stamp.is_file() and stamp.read_text().strip() == digest
            and installed_interfaces_present(venv)):
        log('interfaces up to date')
        return 0

    stamp.unlink(missing_ok=True)
    run_cmake_build(venv, args.build_dir.resolve())
    if not installed_interfaces_present(venv):
        raise SystemExit('[build_interfaces] install finished but the generated interfaces are missing')
    stamp.write_text(digest + '\n')
    log(f'interfaces installed into {venv}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
