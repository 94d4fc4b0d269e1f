#!/usr/bin/env bash
# Shared by scripts/demo.sh and scripts/dashboard-screenshots.sh (sourced, from the repository
# root): the demo repository made from fixtures/demo, and the removal of the demo's projects.

# demo_repo DIR MESSAGE [SETUP]: DIR becomes a Git repository holding fixtures/demo; SETUP (a
# function name, optional) runs in between to add files; one commit with MESSAGE.
demo_repo() {
  local repo=$1 message=$2 setup=${3:-}
  mkdir -p "$repo"
  cp -a fixtures/demo/. "$repo/"
  [ -n "$setup" ] && "$setup" "$repo"
  git -C "$repo" init -q --initial-branch=main
  git -C "$repo" add -A
  git -C "$repo" -c user.name="docker-cd demo" -c user.email=demo@example.invalid \
    commit -qm "$message"
}

# remove_projects PROJECT…: removes the containers docker-cd made for each compose project, and
# the project's networks and volumes.
remove_projects() {
  local project filter ids
  for project in "$@"; do
    filter="label=com.docker.compose.project=$project"
    ids=$(docker ps -aq --filter "$filter" --filter label=com.docker-cd.owner=docker-cd)
    [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
    ids=$(docker network ls -q --filter "$filter")
    [ -n "$ids" ] && docker network rm $ids >/dev/null
    ids=$(docker volume ls -q --filter "$filter")
    [ -n "$ids" ] && docker volume rm $ids >/dev/null
  done
  return 0
}
