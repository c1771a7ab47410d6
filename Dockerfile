# One image for both Troupe processes; docker-compose.yml runs it as `npm run worker` and as `npm run api`.
FROM node:20-bookworm-slim

# bubblewrap is the sandbox for agent commands (util-linux provides prlimit and setpriv); git for workspaces.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap ca-certificates git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, so code changes do not reinstall them. --ignore-scripts: the root postinstall needs the
# sources (it is run below as `npm run generate`), and nothing here relies on a dependency's install script.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

COPY . .
RUN npm run generate

ENV NODE_ENV=production
# Overridden per service in docker-compose.yml.
CMD ["npm", "run", "worker"]
