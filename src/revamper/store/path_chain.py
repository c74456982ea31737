"""Whether another user could swap a cache by changing a directory above it, or a link on the way.

A cache directory of ours is only as safe as the path to it: if another user may rename entries
of a directory above it (the directory is theirs, or they may write to it and it is not sticky),
or owns a symbolic link on the way, they can point the path at a directory of their choosing
between two opens. So, as ``ssh`` requires of the directories above ``~/.ssh``, the path is
walked from ``/`` one component at a time (``lstat``, links followed by hand): every directory
that holds a component must pass :func:`replaceable_by_others`, and every link must be ours or
root's. A group-writable directory whose group is the owner's private group (no other members,
the user-private-group convention of ``umask 002``) passes, as with Debian's ``ssh``.

Setups where a directory above the cache is legitimately writable by someone else (a container
run as root on a volume owned by the host's user, a rootless container where the host's root
shows as ``nobody``) can opt out with the environment variable :data:`TRUST_PARENTS_ENV` set to
``1``; the cache directory itself is still checked.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Final

from revamper.errors import UnsafeCacheError

__all__ = ["TRUST_PARENTS_ENV", "checked_real_path", "replaceable_by_others"]

TRUST_PARENTS_ENV: Final = "REVAMPER_TRUST_PARENT_DIRS"
"""Set to ``1`` to skip the check of the directories and links above a cache directory."""
_MAX_LINKS: Final = 40  # as the kernel's limit on links followed in one path


def replaceable_by_others(st: os.stat_result, path: str | None = None) -> str | None:
    """Why another user could rename or replace what a directory holds, or ``None``.

    They can if the directory is theirs, or if group or others may write to it and it is not
    sticky (in a sticky directory, like ``/tmp`` and ``/dev/shm``, only an entry's owner may
    rename or remove it). Group write is harmless when the group is the owner's private group
    and no access control list names anyone else (``path`` is needed to read it; without it,
    group write is never harmless).
    """
    if st.st_uid not in (0, os.geteuid()):
        return "it belongs to another user, who could replace the cache"
    if st.st_mode & stat.S_ISVTX:
        return None
    private = path is not None and _private_group(st) and not _names_others(path)
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and not private):
        return (
            "others may write to it and it is not sticky (chmod +t), so they could replace "
            "the cache"
        )
    return None


def _private_group(st: os.stat_result) -> bool:
    """Whether the directory's group is its owner's own private group.

    That is: the owner's primary group, named like them, with no other listed members, and not
    group 0 (root's group, which containers such as OpenShift's give to arbitrary users).
    """
    if st.st_gid == 0:
        return False
    try:
        owner = pwd.getpwuid(st.st_uid)
        group = grp.getgrgid(st.st_gid)
    except KeyError:
        return False
    if not (
        owner.pw_gid == st.st_gid
        and group.gr_name == owner.pw_name
        and set(group.gr_mem) <= {owner.pw_name}
    ):
        return False
    # A user whose primary group it is belongs to it without being listed (as Debian's ssh).
    return not any(user.pw_gid == st.st_gid and user.pw_uid != st.st_uid for user in pwd.getpwall())


_ACL_ACCESS: Final = "system.posix_acl_access"
_ACL_NAMED: Final = (0x02, 0x08)  # ACL_USER, ACL_GROUP: entries for other users or groups


def _names_others(path: str) -> bool:
    """Whether the directory's access control list names other users or groups.

    With an ACL, the mode's group bits show the ACL's mask, so ``user:bob:rwx`` looks like a
    group-writable directory; any named entry disqualifies it (an unreadable ACL too).
    """
    try:
        raw = os.getxattr(path, _ACL_ACCESS, follow_symlinks=False)
    except OSError as exc:
        return exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)
    entries = raw[4:]  # a 4-byte version, then (tag u16, perm u16, id u32) entries
    return any(
        int.from_bytes(entries[k : k + 2], "little") in _ACL_NAMED
        for k in range(0, len(entries) - 7, 8)
    )


def checked_real_path(path: str | os.PathLike[str]) -> Path:
    """The real path of ``path`` after checking every directory and link on the way to it.

    The last component itself is not judged here (the stores check the cache directory with
    the owner and mode rule); a link there must be ours or root's like any other. The caller
    should use the returned real path from then on, so that no link is followed again.

    Raises:
        UnsafeCacheError: Naming the directory or link through which another user could swap
            the cache.
        FileNotFoundError: If a component does not exist.
    """
    given = os.path.join(os.getcwd(), os.fspath(path))
    if os.environ.get(TRUST_PARENTS_ENV) == "1":
        # The parents are trusted, not links of another user in the cache directory's place.
        for _ in range(_MAX_LINKS):
            st = os.lstat(given)
            if not stat.S_ISLNK(st.st_mode):
                return Path(os.path.realpath(given))
            if st.st_uid not in (0, os.geteuid()):
                raise UnsafeCacheError(given, "it is a symbolic link made by another user", st)
            given = os.path.join(os.path.dirname(given), os.readlink(given))
        raise UnsafeCacheError(given, "too many symbolic links on the way")
    return Path(_walk(given, str(path), [0]))


def _walk(path: str, cache: str, links: list[int]) -> str:
    real = "/"
    _check_holder(real, cache)
    names = [name for name in path.split("/") if name and name != "."]
    for k, name in enumerate(names):
        if name == "..":
            real = os.path.dirname(real)
            continue
        candidate = os.path.join(real, name)
        st = os.lstat(candidate)
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in (0, os.geteuid()):
                raise UnsafeCacheError(
                    candidate,
                    f"it is a symbolic link made by another user, on the way to the cache "
                    f"{cache!r}: they could point it elsewhere",
                    st,
                    advice=_ADVICE,
                )
            links[0] += 1
            if links[0] > _MAX_LINKS:
                raise UnsafeCacheError(candidate, "too many symbolic links on the way", st)
            target = os.readlink(candidate)
            real = _walk(os.path.join(real, target), cache, links)
        else:
            real = candidate
        if k < len(names) - 1:
            _check_holder(real, cache)
    return real


def _check_holder(directory: str, cache: str) -> None:
    st = os.stat(directory)
    problem = replaceable_by_others(st, directory)
    if problem is not None:
        raise UnsafeCacheError(
            directory,
            f"it is a directory on the way to the cache {cache!r}, and {problem}",
            st,
            advice=_ADVICE,
        )


_ADVICE: Final = (
    "Put the cache below directories that only you (or root) can change, e.g. in your home or "
    "in a sticky /tmp; or, if every user who could write there is trusted (a container run as "
    f"root on a volume of the host's user), set {TRUST_PARENTS_ENV}=1"
)
