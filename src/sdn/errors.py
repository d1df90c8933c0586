"""The one exception type that the CLI turns into a single clear error line, and the one failure
(a full disk) that it recognises whatever raised it."""

import errno

# What to do about a full disk, said alike wherever one is reported (files are replaced only when complete).
DISK_FULL_ADVICE = "free some space and run the command again (a training continues from its last checkpoint with --resume auto)"


class UserError(Exception):
    """Bad input or a missing resource the user can fix; printed as one line, no traceback."""


def out_of_space(error: BaseException | None) -> bool:
    """Whether `error` comes from a full disk. torch.save reports one as a RuntimeError ("unexpected pos")
    whose context is the OSError, so the chain of causes is followed."""
    for _ in range(8):  # the chain is short; a cycle must not hang us
        if error is None:
            return False
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False
