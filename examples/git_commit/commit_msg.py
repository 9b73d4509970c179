"""The commit message pipeline in Python, with one change a team might make: a trailer
naming the ticket from the branch name (feature/ABC-123-... gives `Refs: ABC-123`).

    cd your-repo && git add -p && python /path/to/examples/git_commit/commit_msg.py
"""

import re
import subprocess

from mempipe import Item, agent
from mempipe.agents.commit_msg import CommitMsg
from mempipe.agents.staged_diff import StagedDiff


@agent
async def ticket_trailer(item: Item) -> str:
    """Append `Refs: TICKET` when the branch name holds one."""
    branch = subprocess.run(["git", "branch", "--show-current"], capture_output=True,
                            text=True).stdout.strip()
    ticket = re.search(r"[A-Z]+-\d+", branch)
    return item.text + (f"\n\nRefs: {ticket.group()}" if ticket else "")


if __name__ == "__main__":
    pipeline = StagedDiff() | CommitMsg(max_subject=60) | ticket_trailer()
    print(pipeline.run())
