-- Multi-agent orchestration: agent versions, the task tree, scoped blackboard entries with TTL and provenance.

-- AlterTable: the current version of each agent; deleted agents keep their versions for sessions that use them.
ALTER TABLE "agent_definitions" ADD COLUMN "description" TEXT,
ADD COLUMN "retry" JSONB,
ADD COLUMN "timeout_seconds" INTEGER,
ADD COLUMN "source" TEXT NOT NULL DEFAULT 'api',
ADD COLUMN "deleted_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "agent_versions" (
    "agent_id" TEXT NOT NULL,
    "version" INTEGER NOT NULL,
    "definition" JSONB NOT NULL,
    "source" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "agent_versions_pkey" PRIMARY KEY ("agent_id","version")
);

-- AlterTable: sessions may belong to a project (the scope of project memory).
ALTER TABLE "sessions" ADD COLUMN "project" TEXT;

-- AlterTable: the task tree as the orchestrator decided it.
ALTER TABLE "tasks" ADD COLUMN "round" INTEGER NOT NULL DEFAULT 1,
ADD COLUMN "plan_key" TEXT,
ADD COLUMN "role" TEXT,
ADD COLUMN "depends_on" TEXT[] DEFAULT ARRAY[]::TEXT[],
ADD COLUMN "agent_version" INTEGER,
ADD COLUMN "attempts" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN "status_reason" TEXT,
ADD COLUMN "state_version" INTEGER NOT NULL DEFAULT 0;

-- AlterTable: blackboard scope, TTL and provenance.
ALTER TABLE "blackboard_entries" ADD COLUMN "scope" TEXT NOT NULL DEFAULT 'session',
ADD COLUMN "scope_key" TEXT NOT NULL DEFAULT '',
ADD COLUMN "task_id" TEXT,
ADD COLUMN "trace_seq" INTEGER,
ADD COLUMN "expires_at" TIMESTAMPTZ(3);

UPDATE "blackboard_entries" SET "scope_key" = "session_id" WHERE "scope" = 'session';

-- CreateIndex
CREATE INDEX "blackboard_entries_scope_scope_key_key_idx" ON "blackboard_entries"("scope", "scope_key", "key");

-- CreateIndex
CREATE INDEX "blackboard_entries_expires_at_idx" ON "blackboard_entries"("expires_at");

-- CreateIndex
CREATE INDEX "tasks_parent_id_idx" ON "tasks"("parent_id");
