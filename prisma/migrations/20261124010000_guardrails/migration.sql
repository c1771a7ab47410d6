-- Coding agents that act safely: the session's repository and worktree, and durable approvals.

-- AlterTable
ALTER TABLE "sessions" ADD COLUMN "repo" TEXT,
ADD COLUMN "workspace" JSONB,
ADD COLUMN "workspace_removed_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "approvals" (
    "id" TEXT NOT NULL,
    "session_id" TEXT NOT NULL,
    "task_id" TEXT,
    "workflow_id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "tool" TEXT NOT NULL,
    "input" JSONB NOT NULL,
    "decision" JSONB NOT NULL,
    "status" TEXT NOT NULL,
    "decided_by" TEXT,
    "reason" TEXT,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "decided_at" TIMESTAMPTZ(3),

    CONSTRAINT "approvals_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "approvals_session_id_status_idx" ON "approvals"("session_id", "status");

-- AddForeignKey
ALTER TABLE "approvals" ADD CONSTRAINT "approvals_session_id_fkey" FOREIGN KEY ("session_id") REFERENCES "sessions"("id") ON DELETE CASCADE ON UPDATE CASCADE;
