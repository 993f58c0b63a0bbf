#!/usr/bin/env bash
# Local Apache Kafka (KRaft, no ZooKeeper, no Docker) for cxpulse development and tests.
#
# The broker jars come from Maven Central (deploy/kafka/pom.xml) into a per-user cache, and
# every broker file (config, data, logs, pid files) lives under the --dir given to `start`.
# Run `kafka.sh --help` or `kafka.sh SUBCOMMAND --help`; deploy/kafka/README.md has more.
#
# Exit codes: 0 ok, 1 failure, 2 bad usage, 3 `status`: not every node runs.
set -euo pipefail

PROG=kafka.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
LOG4J_CONFIG="$SCRIPT_DIR/log4j2.properties"
# Broker JVM options besides -Xmx (e.g. KAFKA_JVM_OPTS='-XX:TieredStopAtLevel=1').
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:-}
# Python used for the readiness metadata check (skipped if it cannot import kafka-python).
CXPULSE_PYTHON=${CXPULSE_PYTHON:-python3}

DEFAULT_PORT=9092
DEFAULT_HEAP=512m
DEFAULT_START_TIMEOUT=60
DEFAULT_STOP_TIMEOUT=30
CONTROLLER_PORT_OFFSET=100

# ---------------------------------------------------------------------------------------------
# Messages and usage
# ---------------------------------------------------------------------------------------------

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}
usage_error() {
  printf '%s: error: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2
  exit 2
}

usage_main() {
  cat <<EOF
Usage: $PROG SUBCOMMAND [OPTIONS]

Local Apache Kafka $KAFKA_VERSION in KRaft mode (no ZooKeeper, no Docker) for cxpulse.

Subcommands:
  fetch       download the broker jars into the cache (once; later runs are instant)
  start       start a 1- or 3-node cluster in --dir and wait until it serves requests
  stop        stop every node in --dir
  status      show which nodes in --dir run (exit 3 if not all)
  kill-node   SIGKILL one node (failure tests)
  start-node  restart one node and wait for it

Environment:
  KAFKA_VERSION       broker version (default 4.1.1; Kafka 4.x only)
  CXPULSE_CACHE_DIR   jar cache root (default \$HOME/.cache/cxpulse)
  KAFKA_JVM_OPTS      extra JVM options for the brokers
  CXPULSE_PYTHON      python with kafka-python for the readiness check (default python3)

Exit codes: 0 ok, 1 failure, 2 bad usage, 3 status: not every node runs.
Run '$PROG SUBCOMMAND --help' for the options of a subcommand.
EOF
}

usage_fetch() {
  cat <<EOF
Usage: $PROG fetch

Resolves org.apache.kafka:kafka_2.13:\$KAFKA_VERSION and its runtime jars with Maven into
  \${CXPULSE_CACHE_DIR:-\$HOME/.cache/cxpulse}/kafka-\$KAFKA_VERSION/libs
and prints that path. A stamp file is written only after a complete resolve, so a later run
does nothing (and needs no mvn), while an interrupted one is redone. Needs java and mvn.
EOF
}

usage_start() {
  cat <<EOF
Usage: $PROG start --dir DIR [--port $DEFAULT_PORT] [--brokers 1|3] [--controller-port P]
                   [--heap $DEFAULT_HEAP] [--timeout $DEFAULT_START_TIMEOUT]
                   [--sasl-ssl-port P --ssl-keystore FILE [--ssl-keystore-password PASS]
                    [--ssl-truststore FILE [--ssl-truststore-password PASS]]
                    [--scram-user NAME:PASSWORD]... [--scram-users-file FILE]]

Starts a cluster whose config, data and logs live only under DIR, formatting the storage the
first time only. Every node is a combined broker+controller on 127.0.0.1:
  --brokers 1  one node on PORT
  --brokers 3  nodes on PORT, PORT+1, PORT+2; quorum of 3, default.replication.factor=3,
               min.insync.replicas=2
Controller ports default to PORT+$CONTROLLER_PORT_OFFSET onwards. Port and node count are fixed when DIR is
first used; later starts may omit them. Waits up to --timeout seconds until each node logs
"Kafka Server started", accepts TCP and the cluster answers a metadata request, then prints the
bootstrap servers (e.g. 127.0.0.1:9092) as the last line of stdout. Nodes already running are
left alone; if all run it says so and exits 0. On a timeout it prints the log tail, stops the
nodes it started and exits 1. Logs: DIR/logs/node-N/server.log (and stdout.log).

Security: a SASL_SSL listener (SCRAM-SHA-512 over TLS) next to the PLAINTEXT one, which stays
for the brokers' own traffic and the readiness check (keep it off the network elsewhere):
  --sasl-ssl-port P              SASL_SSL listener on P (nodes on P, P+1, P+2)
  --ssl-keystore FILE            the brokers' key and certificate chain: PKCS12 (.p12, .pfx),
                                 JKS (.jks) or PEM (.pem: PKCS#8 key + certificates)
  --ssl-keystore-password PASS   keystore (and key) password [env KAFKA_SSL_KEYSTORE_PASSWORD];
                                 not needed for an unencrypted PEM file
  --ssl-truststore FILE          CAs the brokers trust (client certificates only; optional)
  --ssl-truststore-password PASS [env KAFKA_SSL_TRUSTSTORE_PASSWORD]
  --scram-user NAME:PASSWORD     a SCRAM-SHA-512 user (repeatable): created when the storage is
                                 formatted (kafka-storage format --add-scram), or through the
                                 admin API after the start when DIR was formatted before (an
                                 existing user then gets the new password)
  --scram-users-file FILE        more users, one NAME:PASSWORD per line ('#' comments); keeps
                                 the passwords out of the process list
The listener settings are kept in DIR/security.conf (mode 600), so later starts and start-node
may omit them; giving them again replaces them. User names: letters, digits, '.', '_', '-';
passwords: no whitespace and none of , [ ] " =
EOF
}

usage_stop() {
  cat <<EOF
Usage: $PROG stop --dir DIR [--timeout $DEFAULT_STOP_TIMEOUT]

Sends SIGTERM to every node in DIR, waits up to --timeout seconds for a clean shutdown, then
SIGKILLs what is left and removes the pid files. Exits 0 if nothing was running.
EOF
}

usage_status() {
  cat <<EOF
Usage: $PROG status --dir DIR

Prints one line per node (id, running/stopped, pid, address). Exits 0 if every node runs,
3 otherwise (also when DIR holds no cluster).
EOF
}

usage_kill_node() {
  cat <<EOF
Usage: $PROG kill-node --dir DIR --node N

SIGKILLs node N (1-based) without a clean shutdown, to test failure handling.
Exits 0 if it was not running.
EOF
}

usage_start_node() {
  cat <<EOF
Usage: $PROG start-node --dir DIR --node N [--heap $DEFAULT_HEAP] [--timeout $DEFAULT_START_TIMEOUT]

Starts node N of the cluster in DIR again (after kill-node or a crash) and waits until it is
back in the cluster. Prints the bootstrap servers on success. Exits 0 if it already runs.
EOF
}

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# need_value OPTION ARGC: an option that takes a value must have one.
need_value() {
  [[ $2 -ge 2 ]] || usage_error "$1 needs a value"
}

check_port() {
  if ! is_uint "$2" || ((10#$2 < 1 || 10#$2 > 65535)); then
    usage_error "$1 must be a TCP port (1-65535), got '$2'"
  fi
}

check_timeout() {
  if ! is_uint "$1" || ((10#$1 == 0)); then
    usage_error "--timeout must be a positive number of seconds, got '$1'"
  fi
}

check_heap() {
  [[ $1 =~ ^[0-9]+[kKmMgG]$ ]] || usage_error "--heap must look like 512m or 1g, got '$1'"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT (bash /dev/tcp).
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cache_dir() {
  local root=${CXPULSE_CACHE_DIR:-}
  if [[ -z $root ]]; then
    [[ -n ${HOME:-} ]] || die "neither CXPULSE_CACHE_DIR nor HOME is set; set CXPULSE_CACHE_DIR"
    root="$HOME/.cache/cxpulse"
  fi
  printf '%s/kafka-%s\n' "$root" "$KAFKA_VERSION"
}

check_version() {
  [[ $KAFKA_VERSION =~ ^4\.[0-9]+\.[0-9]+$ ]] ||
    die "KAFKA_VERSION must be a Kafka 4.x release like 4.1.1, got '$KAFKA_VERSION'"
}

require_java() {
  command -v java >/dev/null 2>&1 ||
    die "java not found on PATH; install a JDK 17+ (e.g. apt-get install -y openjdk-17-jre-headless)"
  local line major
  line=$(java -version 2>&1) || die "'java -version' failed; check the JDK on PATH"
  line=${line%%$'\n'*}
  if [[ $line =~ \"([0-9]+) ]]; then
    major=${BASH_REMATCH[1]}
    ((major >= 17)) || die "Kafka 4 needs Java 17+, but 'java' is: $line; put a JDK 17+ first on PATH"
  fi
}

# ---------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------

LIBS=""
STAMP=""
RESOLVE_TMP=""

cleanup_resolve() {
  if [[ -n $RESOLVE_TMP && -d $RESOLVE_TMP ]]; then
    rm -rf "$RESOLVE_TMP"
  fi
}

# ensure_libs: make $LIBS hold the complete jar set, resolving with Maven only when the stamp
# is missing. The resolve goes to a temp dir that is renamed into place, and a lock keeps two
# concurrent fetches (parallel test sessions) from interleaving.
ensure_libs() {
  check_version
  local home
  home=$(cache_dir)
  LIBS="$home/libs"
  STAMP="$home/.complete"
  if [[ -f $STAMP && -d $LIBS ]]; then
    return 0
  fi

  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found on PATH; install Maven 3 (e.g. apt-get install -y maven) to fetch Kafka $KAFKA_VERSION"
  command -v java >/dev/null 2>&1 ||
    die "java not found on PATH; install a JDK 17+ (e.g. apt-get install -y openjdk-17-jre-headless)"
  mkdir -p "$home" || die "cannot create the cache dir $home; set CXPULSE_CACHE_DIR to a writable dir"

  local lock_fd
  exec {lock_fd}>"$home/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 900 "$lock_fd" || die "another '$PROG fetch' holds $home/.lock for 15 min; kill it or remove the lock"
  fi
  if [[ -f $STAMP && -d $LIBS ]]; then # another process finished it while we waited
    exec {lock_fd}>&-
    return 0
  fi

  rm -rf "$home"/resolve.* # left by a fetch that was killed; we hold the lock, so not in use
  log "fetching Kafka $KAFKA_VERSION jars with Maven into $LIBS (first run only)"
  RESOLVE_TMP=$(mktemp -d "$home/resolve.XXXXXX")
  trap cleanup_resolve EXIT
  cp "$SCRIPT_DIR/pom.xml" "$RESOLVE_TMP/pom.xml"
  if ! mvn -B -q -f "$RESOLVE_TMP/pom.xml" "-Dkafka.version=$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$RESOLVE_TMP/libs" \
    >"$home/fetch.log" 2>&1; then
    tail -n 20 "$home/fetch.log" >&2 || true
    die "Maven could not resolve Kafka $KAFKA_VERSION (full log: $home/fetch.log); check KAFKA_VERSION and access to Maven Central"
  fi
  [[ -f $RESOLVE_TMP/libs/kafka_2.13-$KAFKA_VERSION.jar ]] ||
    die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing (log: $home/fetch.log)"

  rm -rf "$LIBS" "$STAMP"
  mv "$RESOLVE_TMP/libs" "$LIBS"
  printf 'kafka_version=%s\njars=%s\n' "$KAFKA_VERSION" "$(find "$LIBS" -name '*.jar' | wc -l)" >"$STAMP"
  cleanup_resolve
  RESOLVE_TMP=""
  exec {lock_fd}>&- # the brokers started later must not inherit (and hold) the lock
}

cmd_fetch() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h | --help) usage_fetch; return 0 ;;
      *) usage_error "fetch: unknown argument '$1'" ;;
    esac
  done
  ensure_libs
  log "Kafka $KAFKA_VERSION jars are in $LIBS"
  printf '%s\n' "$LIBS"
}

# ---------------------------------------------------------------------------------------------
# Cluster layout under DIR
#   DIR/cluster.conf            BROKERS, PORT, CONTROLLER_PORT (fixed on first start)
#   DIR/cluster.id              KRaft cluster id used to format every node
#   DIR/node-N/server.properties, DIR/node-N/data/, DIR/node-N/kafka.pid
#   DIR/logs/node-N/server.log (log4j2, rolling) and stdout.log (JVM stdout/stderr)
# ---------------------------------------------------------------------------------------------

DIR=""
BROKERS=""
PORT=""
CONTROLLER_PORT=""

# Security (DIR/security.conf): an optional SASL_SSL listener with SCRAM-SHA-512.
SASL_SSL_PORT=""
KEYSTORE=""
KEYSTORE_PASSWORD=""
TRUSTSTORE=""
TRUSTSTORE_PASSWORD=""
SCRAM_USERS=() # NAME:PASSWORD, given on this run (never stored by kafka.sh)
SCRAM_MECHANISM=SCRAM-SHA-512

# abs_dir PATH [create]: absolute path of PATH (created if asked).
abs_dir() {
  if [[ ${2:-} == create ]]; then
    mkdir -p "$1" || die "cannot create --dir $1; pick a writable directory"
  fi
  [[ -d $1 ]] || return 1
  (cd "$1" && pwd -P)
}

# load_conf: read DIR/cluster.conf into BROKERS/PORT/CONTROLLER_PORT; fails if there is none.
load_conf() {
  local conf="$DIR/cluster.conf" key value
  [[ -f $conf ]] || return 1
  while IFS='=' read -r key value; do
    case $key in
      BROKERS) BROKERS=$value ;;
      PORT) PORT=$value ;;
      CONTROLLER_PORT) CONTROLLER_PORT=$value ;;
    esac
  done <"$conf"
  if ! is_uint "$BROKERS" || ! is_uint "$PORT" || ! is_uint "$CONTROLLER_PORT"; then
    die "$conf is corrupt; stop the cluster and delete $DIR to start afresh"
  fi
}

# require_cluster DIR_ARG: set DIR and load its config, or fail with a hint.
require_cluster() {
  [[ -n $1 ]] || usage_error "--dir DIR is required"
  DIR=$(abs_dir "$1") || die "$1 does not exist; start a cluster there first with '$PROG start --dir $1'"
  load_conf || die "no Kafka cluster in $DIR (no cluster.conf); start one with '$PROG start --dir $1'"
  load_security
}

# lock_dir: serialize the kafka.sh runs that change DIR (two concurrent starts would race for
# the same ports and pid files). Launched JVMs must not inherit the fd, see launch_node.
DIR_LOCK_FD=""
lock_dir() {
  exec {DIR_LOCK_FD}>"$DIR/.kafka.sh.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 300 "$DIR_LOCK_FD" ||
      die "another kafka.sh has been working on $DIR for 5 min ($DIR/.kafka.sh.lock); wait for it or stop it"
  fi
}

# store_type FILE: the Kafka keystore type its extension names.
store_type() {
  case ${1,,} in
    *.p12 | *.pfx | *.pkcs12) printf 'PKCS12\n' ;;
    *.jks) printf 'JKS\n' ;;
    *.pem | *.crt) printf 'PEM\n' ;;
    *) return 1 ;;
  esac
}

# add_scram_user SPEC: validate NAME:PASSWORD and remember it.
add_scram_user() {
  local spec=$1 name password
  [[ $spec == *:* ]] || usage_error "--scram-user wants NAME:PASSWORD, got '${spec%%:*}' without a password"
  name=${spec%%:*}
  password=${spec#*:}
  [[ $name =~ ^[A-Za-z0-9._-]+$ ]] ||
    usage_error "SCRAM user name '$name' may only hold letters, digits, '.', '_' and '-'"
  [[ -n $password && $password != *[[:space:],\[\]\"=]* ]] ||
    usage_error "the password of SCRAM user '$name' must be non-empty, without whitespace or any of , [ ] \" ="
  SCRAM_USERS+=("$name:$password")
}

# read_scram_users_file FILE: one NAME:PASSWORD per line, blank lines and '#' comments skipped.
read_scram_users_file() {
  local line
  [[ -r $1 ]] || usage_error "--scram-users-file $1 cannot be read"
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    [[ -z ${line//[[:space:]]/} || $line =~ ^[[:space:]]*# ]] && continue
    add_scram_user "$line"
  done <"$1"
}

# load_security: DIR/security.conf into the SASL_SSL settings (absent file: no listener).
load_security() {
  local conf="$DIR/security.conf" key value
  [[ -f $conf ]] || return 0
  while IFS='=' read -r key value; do
    case $key in
      SASL_SSL_PORT) SASL_SSL_PORT=$value ;;
      KEYSTORE) KEYSTORE=$value ;;
      KEYSTORE_PASSWORD) KEYSTORE_PASSWORD=$value ;;
      TRUSTSTORE) TRUSTSTORE=$value ;;
      TRUSTSTORE_PASSWORD) TRUSTSTORE_PASSWORD=$value ;;
    esac
  done <"$conf"
  is_uint "$SASL_SSL_PORT" || die "$conf is corrupt (SASL_SSL_PORT); fix it or delete it and pass --sasl-ssl-port again"
}

save_security() {
  local conf="$DIR/security.conf"
  (
    umask 077
    printf 'SASL_SSL_PORT=%s\nKEYSTORE=%s\nKEYSTORE_PASSWORD=%s\nTRUSTSTORE=%s\nTRUSTSTORE_PASSWORD=%s\n' \
      "$SASL_SSL_PORT" "$KEYSTORE" "$KEYSTORE_PASSWORD" "$TRUSTSTORE" "$TRUSTSTORE_PASSWORD" >"$conf"
  )
}

node_sasl_ssl_port() { printf '%s\n' $((SASL_SSL_PORT + $1 - 1)); }

sasl_ssl_servers() {
  local n out=""
  for ((n = 1; n <= BROKERS; n++)); do
    out+="${out:+,}127.0.0.1:$(node_sasl_ssl_port "$n")"
  done
  printf '%s\n' "$out"
}

# security_properties N: the SASL_SSL listener's broker settings (nothing without one).
security_properties() {
  [[ -n $SASL_SSL_PORT ]] || return 0
  local prefix=listener.name.sasl_ssl
  cat <<EOF
sasl.enabled.mechanisms=$SCRAM_MECHANISM
$prefix.sasl.enabled.mechanisms=$SCRAM_MECHANISM
$prefix.${SCRAM_MECHANISM,,}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
$prefix.ssl.client.auth=none
$prefix.ssl.keystore.location=$KEYSTORE
$prefix.ssl.keystore.type=$(store_type "$KEYSTORE")
EOF
  if [[ -n $KEYSTORE_PASSWORD ]]; then
    if [[ $(store_type "$KEYSTORE") == PEM ]]; then
      printf '%s.ssl.key.password=%s\n' "$prefix" "$KEYSTORE_PASSWORD"
    else
      printf '%s.ssl.keystore.password=%s\n%s.ssl.key.password=%s\n' \
        "$prefix" "$KEYSTORE_PASSWORD" "$prefix" "$KEYSTORE_PASSWORD"
    fi
  fi
  if [[ -n $TRUSTSTORE ]]; then
    printf '%s.ssl.truststore.location=%s\n%s.ssl.truststore.type=%s\n' \
      "$prefix" "$TRUSTSTORE" "$prefix" "$(store_type "$TRUSTSTORE")"
    [[ -z $TRUSTSTORE_PASSWORD ]] || printf '%s.ssl.truststore.password=%s\n' "$prefix" "$TRUSTSTORE_PASSWORD"
  fi
}

# scram_format_args: kafka-storage format arguments that create the given SCRAM users.
scram_format_args() {
  local spec
  SCRAM_ARGS=()
  for spec in "${SCRAM_USERS[@]}"; do
    SCRAM_ARGS+=(--add-scram "$SCRAM_MECHANISM=[name=${spec%%:*},password=${spec#*:}]")
  done
}

# add_scram_users_online: create (or re-password) the given users through the admin API of
# the running cluster, for a DIR whose storage was formatted before.
add_scram_users_online() {
  local spec
  for spec in "${SCRAM_USERS[@]}"; do
    java_cmd 1 256m
    if ! "${JAVA_CMD[@]}" kafka.admin.ConfigCommand --bootstrap-server "$(bootstrap_servers)" \
      --alter --entity-type users --entity-name "${spec%%:*}" \
      --add-config "$SCRAM_MECHANISM=[password=${spec#*:}]" \
      >"$DIR/logs/scram-users.log" 2>&1 </dev/null; then
      tail -n 5 "$DIR/logs/scram-users.log" >&2 || true
      die "could not create SCRAM user '${spec%%:*}' (log: $DIR/logs/scram-users.log)"
    fi
  done
  log "SCRAM users set through the admin API: ${#SCRAM_USERS[@]}"
}

node_dir() { printf '%s/node-%s\n' "$DIR" "$1"; }
node_log_dir() { printf '%s/logs/node-%s\n' "$DIR" "$1"; }
node_pid_file() { printf '%s/node-%s/kafka.pid\n' "$DIR" "$1"; }
node_port() { printf '%s\n' $((PORT + $1 - 1)); }
node_controller_port() { printf '%s\n' $((CONTROLLER_PORT + $1 - 1)); }

bootstrap_servers() {
  local n out=""
  for ((n = 1; n <= BROKERS; n++)); do
    out+="${out:+,}127.0.0.1:$(node_port "$n")"
  done
  printf '%s\n' "$out"
}

# node_pid N: print the pid of node N if it runs. A stale pid file (or a pid reused by an
# unrelated process) counts as not running.
node_pid() {
  local pid_file pid args
  pid_file=$(node_pid_file "$1")
  [[ -s $pid_file ]] || return 1
  pid=$(<"$pid_file")
  is_uint "$pid" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
  [[ $args == *kafka.Kafka* && $args == *"$(node_dir "$1")/server.properties"* ]] || return 1
  printf '%s\n' "$pid"
}

check_node_arg() {
  [[ -n $1 ]] || usage_error "--node N is required"
  if ! is_uint "$1" || ((10#$1 < 1 || 10#$1 > BROKERS)); then
    usage_error "--node must be between 1 and $BROKERS for the cluster in $DIR, got '$1'"
  fi
}

write_server_properties() {
  local n=$1 rf=1 min_isr=1 controlled_shutdown=true voters="" i
  if ((BROKERS == 3)); then
    rf=3
    min_isr=2
    # `stop` TERMs all nodes at once. With controlled shutdown on, a broker whose request
    # reaches the controller after two of the three controllers are gone waits 5 minutes
    # for an approval that cannot come (seen in ~1 of 8 stops). kill-node/start-node do not
    # use it, and whole-cluster stops gain nothing from moving leaders first.
    controlled_shutdown=false
  fi
  for ((i = 1; i <= BROKERS; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:$(node_controller_port "$i")"
  done
  local listeners advertised protocols
  listeners="PLAINTEXT://127.0.0.1:$(node_port "$n")"
  advertised=$listeners
  protocols=PLAINTEXT:PLAINTEXT
  if [[ -n $SASL_SSL_PORT ]]; then
    listeners+=",SASL_SSL://127.0.0.1:$(node_sasl_ssl_port "$n")"
    advertised=$listeners
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  mkdir -p "$(node_dir "$n")/data"
  (
    umask 077 # may hold keystore passwords
    {
      cat <<EOF
# Written by deploy/kafka/kafka.sh on every start: edits here are lost.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=$listeners,CONTROLLER://127.0.0.1:$(node_controller_port "$n")
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols,CONTROLLER:PLAINTEXT
log.dirs=$(node_dir "$n")/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
controlled.shutdown.enable=$controlled_shutdown
EOF
      security_properties
    } >"$(node_dir "$n")/server.properties"
  )
}

# cluster_id: the id in DIR/cluster.id, else one recovered from a formatted node, else a new
# random one (16 random bytes, base64url without padding, as Kafka's Uuid prints them).
cluster_id() {
  local file="$DIR/cluster.id" id="" meta
  if [[ -s $file ]]; then
    id=$(<"$file")
  else
    for meta in "$DIR"/node-*/data/meta.properties; do
      [[ -f $meta ]] || continue
      id=$(sed -n 's/^cluster\.id=//p' "$meta")
      [[ -n $id ]] && break
    done
    while [[ -z $id || $id == -* || ${#id} -ne 22 ]]; do
      id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    printf '%s\n' "$id" >"$file"
  fi
  printf '%s\n' "$id"
}

java_cmd() {
  local n=$1 heap=$2
  local -a opts=()
  if [[ -n $KAFKA_JVM_OPTS ]]; then
    read -r -a opts <<<"$KAFKA_JVM_OPTS"
  fi
  JAVA_CMD=(java "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$LOG4J_CONFIG"
    "-Dkafka.logs.dir=$(node_log_dir "$n")" "${opts[@]}" -cp "$LIBS/*")
}

# format_nodes: format the storage of every node that has no meta.properties yet (in parallel:
# each format is a JVM start).
FORMATTED_ALL=no
format_nodes() {
  local id n status=0
  local -a pids=() nodes=()
  id=$(cluster_id)
  scram_format_args
  for ((n = 1; n <= BROKERS; n++)); do
    [[ -f $(node_dir "$n")/data/meta.properties ]] && continue
    mkdir -p "$(node_log_dir "$n")"
    java_cmd "$n" 256m
    "${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$id" -c "$(node_dir "$n")/server.properties" \
      "${SCRAM_ARGS[@]}" >"$(node_log_dir "$n")/format.log" 2>&1 </dev/null &
    pids+=("$!")
    nodes+=("$n")
  done
  ((${#pids[@]} > 0)) || return 0
  ((${#pids[@]} == BROKERS)) && FORMATTED_ALL=yes
  log "formatting storage of node(s) ${nodes[*]} (cluster id $id)"
  for ((n = 0; n < ${#pids[@]}; n++)); do
    if ! wait "${pids[$n]}"; then
      tail -n 20 "$(node_log_dir "${nodes[$n]}")/format.log" >&2 || true
      status=1
    fi
  done
  ((status == 0)) || die "formatting the storage in $DIR failed (see above); delete $DIR to start afresh"
}

# launch_node N HEAP: start node N detached (own session, stdin closed, output to its log dir)
# and record where its server.log ended, so the readiness check only reads this run's lines.
declare -A LOG_OFFSET=()
launch_node() {
  local n=$1 heap=$2 logdir pid_file server_log i
  logdir=$(node_log_dir "$n")
  pid_file=$(node_pid_file "$n")
  server_log="$logdir/server.log"
  mkdir -p "$logdir"
  LOG_OFFSET[$n]=0
  if [[ -f $server_log ]]; then
    LOG_OFFSET[$n]=$(wc -c <"$server_log")
  fi
  rm -f "$pid_file"
  java_cmd "$n" "$heap"
  # The inner shell writes its own pid and then execs java, so the pid file holds the JVM's
  # pid even if setsid had to fork.
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  setsid nohup bash -c 'echo $$ >"$0" && exec "$@"' "$pid_file" \
    "${JAVA_CMD[@]}" kafka.Kafka "$(node_dir "$n")/server.properties" \
    </dev/null >"$logdir/stdout.log" 2>&1 {DIR_LOCK_FD}>&- &
  disown # no "Killed" job notice from this shell when the node is killed later
  for ((i = 0; i < 50; i++)); do
    [[ -s $pid_file ]] && return 0
    sleep 0.1
  done
  die "node $n did not start (no pid file after 5 s); see $logdir/stdout.log"
}

# node_started N: node N logged "Kafka Server started" since launch_node.
node_started() {
  local server_log offset
  server_log="$(node_log_dir "$1")/server.log"
  offset=${LOG_OFFSET[$1]:-0}
  [[ -f $server_log ]] || return 1
  if (($(wc -c <"$server_log") < offset)); then
    offset=0 # the log rolled over since the launch
  fi
  # Not `tail | grep -q`: with pipefail, tail's SIGPIPE after an early match would read as "no".
  grep -q 'Kafka Server started' < <(tail -c "+$((offset + 1))" "$server_log")
}

# metadata_ok: the cluster answers DescribeCluster with every broker, if kafka-python exists.
# Without it, the per-node "Kafka Server started" line and TCP check must do. An unexpected
# error of the check itself (exit 2, e.g. an incompatible kafka-python) disables it.
HAVE_PY_KAFKA=""
metadata_ok() {
  if [[ -z $HAVE_PY_KAFKA ]]; then
    HAVE_PY_KAFKA=no
    if "$CXPULSE_PYTHON" -c 'import kafka.admin' >/dev/null 2>&1; then
      HAVE_PY_KAFKA=yes
    fi
  fi
  [[ $HAVE_PY_KAFKA == yes ]] || return 0
  local rc=0
  "$CXPULSE_PYTHON" - "$(bootstrap_servers)" "$BROKERS" >/dev/null 2>"$DIR/logs/readiness.err" <<'EOF' || rc=$?
import sys

try:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=sys.argv[1], client_id="cxpulse-kafka-sh", request_timeout_ms=5000
        )
        brokers = admin.describe_cluster()["brokers"]
    finally:
        if admin is not None:
            admin.close()
except (KafkaError, OSError):
    sys.exit(1)  # not ready yet
except Exception as exc:
    print(f"readiness check unusable: {exc!r}", file=sys.stderr)
    sys.exit(2)
sys.exit(0 if len(brokers) >= int(sys.argv[2]) else 1)
EOF
  if ((rc == 2)); then
    log "warning: the kafka-python readiness check fails ($(tail -n 1 "$DIR/logs/readiness.err")); relying on the broker logs"
    HAVE_PY_KAFKA=no
    return 0
  fi
  return "$rc"
}

print_log_tail() {
  local n=$1 logdir
  logdir=$(node_log_dir "$n")
  log "---- node $n: last lines of $logdir/server.log ----"
  tail -n 25 "$logdir/server.log" >&2 2>/dev/null || true
  if [[ -s $logdir/stdout.log ]]; then
    log "---- node $n: $logdir/stdout.log ----"
    tail -n 15 "$logdir/stdout.log" >&2 || true
  fi
}

# wait_ready TIMEOUT N...: wait until the given (just launched) nodes are up and the cluster
# answers a metadata request. On failure print the logs and kill the launched nodes, so a
# failed start leaves nothing behind.
wait_ready() {
  local timeout=$1 n all_up
  shift
  local deadline=$((SECONDS + timeout))
  while :; do
    all_up=yes
    for n in "$@"; do
      if ! node_pid "$n" >/dev/null; then
        print_log_tail "$n"
        kill_nodes "$@"
        die "node $n exited during startup (see the log above); a port may be in use or DIR may be damaged"
      fi
      if ! node_started "$n" || ! port_open "$(node_port "$n")"; then
        all_up=no
      elif [[ -n $SASL_SSL_PORT ]] && ! port_open "$(node_sasl_ssl_port "$n")"; then
        all_up=no
      fi
    done
    if [[ $all_up == yes ]] && metadata_ok; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      for n in "$@"; do print_log_tail "$n"; done
      kill_nodes "$@"
      die "the cluster in $DIR was not ready within $timeout s (log tail above); retry with a larger --timeout or see $DIR/logs"
    fi
    sleep 0.5
  done
}

# signal_and_wait SIGNAL TIMEOUT N...: send SIGNAL to the given nodes, wait until they are gone.
# Returns 1 if some still run after TIMEOUT seconds.
signal_and_wait() {
  local sig=$1 timeout=$2 n pid alive
  shift 2
  for n in "$@"; do
    if pid=$(node_pid "$n"); then
      kill "-$sig" "$pid" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + timeout))
  while :; do
    alive=no
    for n in "$@"; do
      node_pid "$n" >/dev/null && alive=yes
    done
    [[ $alive == no ]] && return 0
    ((SECONDS >= deadline)) && return 1
    sleep 0.2
  done
}

kill_nodes() {
  local n
  signal_and_wait KILL 10 "$@" || true
  for n in "$@"; do rm -f "$(node_pid_file "$n")"; done
}

# ---------------------------------------------------------------------------------------------
# start / start-node / stop / kill-node / status
# ---------------------------------------------------------------------------------------------

cmd_start() {
  local dir_arg="" port="" brokers="" cport="" heap=$DEFAULT_HEAP timeout=$DEFAULT_START_TIMEOUT
  local sasl_port="" keystore="" keystore_pw=${KAFKA_SSL_KEYSTORE_PASSWORD:-} truststore=""
  local truststore_pw=${KAFKA_SSL_TRUSTSTORE_PASSWORD:-}
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h | --help) usage_start; return 0 ;;
      --dir) need_value "$1" $#; dir_arg=$2; shift 2 ;;
      --port) need_value "$1" $#; port=$2; shift 2 ;;
      --brokers) need_value "$1" $#; brokers=$2; shift 2 ;;
      --controller-port) need_value "$1" $#; cport=$2; shift 2 ;;
      --heap) need_value "$1" $#; heap=$2; shift 2 ;;
      --timeout) need_value "$1" $#; timeout=$2; shift 2 ;;
      --sasl-ssl-port) need_value "$1" $#; sasl_port=$2; shift 2 ;;
      --ssl-keystore) need_value "$1" $#; keystore=$2; shift 2 ;;
      --ssl-keystore-password) need_value "$1" $#; keystore_pw=$2; shift 2 ;;
      --ssl-truststore) need_value "$1" $#; truststore=$2; shift 2 ;;
      --ssl-truststore-password) need_value "$1" $#; truststore_pw=$2; shift 2 ;;
      --scram-user) need_value "$1" $#; add_scram_user "$2"; shift 2 ;;
      --scram-users-file) need_value "$1" $#; read_scram_users_file "$2"; shift 2 ;;
      *) usage_error "start: unknown argument '$1'" ;;
    esac
  done
  [[ -z $sasl_port ]] || check_port --sasl-ssl-port "$sasl_port"
  if [[ -n $sasl_port ]]; then
    [[ -n $keystore ]] || usage_error "--sasl-ssl-port needs --ssl-keystore FILE (the brokers' key and certificate)"
  elif [[ -n $keystore || -n $truststore ]]; then
    usage_error "--ssl-keystore/--ssl-truststore only apply with --sasl-ssl-port P"
  fi
  local f
  for f in "$keystore" "$truststore"; do
    [[ -z $f ]] && continue
    [[ -r $f ]] || usage_error "$f cannot be read (--ssl-keystore / --ssl-truststore)"
    store_type "$f" >/dev/null ||
      usage_error "cannot tell the store type of $f: name it .p12/.pfx (PKCS12), .jks or .pem"
  done
  [[ -n $dir_arg ]] || usage_error "start needs --dir DIR (e.g. --dir ./var/kafka)"
  [[ -z $port ]] || check_port --port "$port"
  [[ -z $cport ]] || check_port --controller-port "$cport"
  [[ -z $brokers || $brokers == 1 || $brokers == 3 ]] || usage_error "--brokers must be 1 or 3, got '$brokers'"
  check_heap "$heap"
  check_timeout "$timeout"
  [[ $dir_arg != *,* ]] || usage_error "--dir must not contain a comma (Kafka's log.dirs is a list)"
  if ((${#SCRAM_USERS[@]} > 0)) && [[ -z $sasl_port && ! -f $dir_arg/security.conf ]]; then
    usage_error "--scram-user needs a SASL_SSL listener (--sasl-ssl-port P --ssl-keystore FILE)"
  fi

  DIR=$(abs_dir "$dir_arg" create)
  lock_dir
  if load_conf; then
    # The ports and node count are baked into the formatted KRaft quorum.
    [[ -z $brokers || $brokers == "$BROKERS" ]] ||
      die "$DIR holds a $BROKERS-node cluster; use --brokers $BROKERS or another --dir"
    [[ -z $port || $((10#$port)) == "$PORT" ]] ||
      die "$DIR holds a cluster on port $PORT; use --port $PORT or another --dir"
    [[ -z $cport || $((10#$cport)) == "$CONTROLLER_PORT" ]] ||
      die "$DIR holds a cluster with controller port $CONTROLLER_PORT; use that or another --dir"
  else
    BROKERS=${brokers:-1}
    PORT=$((10#${port:-$DEFAULT_PORT}))
    CONTROLLER_PORT=$((10#${cport:-$((PORT + CONTROLLER_PORT_OFFSET))}))
    ((PORT + BROKERS - 1 <= 65535 && CONTROLLER_PORT + BROKERS - 1 <= 65535)) ||
      usage_error "ports $PORT/$CONTROLLER_PORT + $BROKERS nodes run past 65535; pick lower ports"
    ((CONTROLLER_PORT + BROKERS <= PORT || PORT + BROKERS <= CONTROLLER_PORT)) ||
      usage_error "broker ports $PORT.. and controller ports $CONTROLLER_PORT.. overlap; pick another --controller-port"
    printf 'BROKERS=%s\nPORT=%s\nCONTROLLER_PORT=%s\n' "$BROKERS" "$PORT" "$CONTROLLER_PORT" >"$DIR/cluster.conf"
  fi
  load_security
  if [[ -n $sasl_port ]]; then
    SASL_SSL_PORT=$((10#$sasl_port))
    KEYSTORE=$(cd "$(dirname "$keystore")" && pwd -P)/$(basename "$keystore")
    KEYSTORE_PASSWORD=$keystore_pw
    TRUSTSTORE=""
    [[ -z $truststore ]] || TRUSTSTORE=$(cd "$(dirname "$truststore")" && pwd -P)/$(basename "$truststore")
    TRUSTSTORE_PASSWORD=$truststore_pw
    local lo=$SASL_SSL_PORT hi=$((SASL_SSL_PORT + BROKERS - 1))
    ((hi <= 65535)) || usage_error "--sasl-ssl-port $SASL_SSL_PORT + $BROKERS nodes runs past 65535"
    if ((lo < PORT + BROKERS && PORT <= hi)) || ((lo < CONTROLLER_PORT + BROKERS && CONTROLLER_PORT <= hi)); then
      usage_error "--sasl-ssl-port $SASL_SSL_PORT overlaps the broker ($PORT..) or controller ($CONTROLLER_PORT..) ports"
    fi
    save_security
  fi
  if ((${#SCRAM_USERS[@]} > 0)) && [[ -z $SASL_SSL_PORT ]]; then
    usage_error "--scram-user needs a SASL_SSL listener (--sasl-ssl-port P --ssl-keystore FILE)"
  fi

  local n p
  local -a to_start=()
  for ((n = 1; n <= BROKERS; n++)); do
    node_pid "$n" >/dev/null || to_start+=("$n")
  done
  if ((${#to_start[@]} == 0)); then
    log "already running in $DIR ($BROKERS node(s))"
    if ((${#SCRAM_USERS[@]} > 0)); then
      require_java
      ensure_libs
      add_scram_users_online
    fi
    bootstrap_servers
    return 0
  fi

  require_java
  ensure_libs
  for n in "${to_start[@]}"; do
    for p in "$(node_port "$n")" "$(node_controller_port "$n")" ${SASL_SSL_PORT:+"$(node_sasl_ssl_port "$n")"}; do
      if port_open "$p"; then
        die "port $p on 127.0.0.1 is already in use by another process; stop it or use another --port/--dir"
      fi
    done
  done
  for ((n = 1; n <= BROKERS; n++)); do
    write_server_properties "$n"
  done
  format_nodes

  log "starting node(s) ${to_start[*]} of a $BROKERS-node Kafka $KAFKA_VERSION cluster in $DIR"
  for n in "${to_start[@]}"; do
    launch_node "$n" "$heap"
  done
  wait_ready "$timeout" "${to_start[@]}"
  if ((${#SCRAM_USERS[@]} > 0)) && [[ $FORMATTED_ALL != yes ]]; then
    add_scram_users_online
  fi
  log "ready after ${SECONDS}s; logs in $DIR/logs"
  [[ -z $SASL_SSL_PORT ]] || log "SASL_SSL ($SCRAM_MECHANISM) listener: $(sasl_ssl_servers)"
  bootstrap_servers
}

cmd_start_node() {
  local dir_arg="" node="" heap=$DEFAULT_HEAP timeout=$DEFAULT_START_TIMEOUT
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h | --help) usage_start_node; return 0 ;;
      --dir) need_value "$1" $#; dir_arg=$2; shift 2 ;;
      --node) need_value "$1" $#; node=$2; shift 2 ;;
      --heap) need_value "$1" $#; heap=$2; shift 2 ;;
      --timeout) need_value "$1" $#; timeout=$2; shift 2 ;;
      *) usage_error "start-node: unknown argument '$1'" ;;
    esac
  done
  check_heap "$heap"
  check_timeout "$timeout"
  require_cluster "$dir_arg"
  check_node_arg "$node"
  node=$((10#$node))
  lock_dir
  if node_pid "$node" >/dev/null; then
    log "node $node already runs in $DIR"
    bootstrap_servers
    return 0
  fi
  [[ -f $(node_dir "$node")/data/meta.properties ]] ||
    die "node $node in $DIR was never formatted; run '$PROG start --dir $dir_arg' instead"
  local p
  for p in "$(node_port "$node")" "$(node_controller_port "$node")"; do
    if port_open "$p"; then
      die "port $p on 127.0.0.1 is already in use by another process; stop it first"
    fi
  done
  require_java
  ensure_libs
  log "starting node $node in $DIR"
  launch_node "$node" "$heap"
  wait_ready "$timeout" "$node"
  log "node $node ready after ${SECONDS}s"
  bootstrap_servers
}

cmd_stop() {
  local dir_arg="" timeout=$DEFAULT_STOP_TIMEOUT
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h | --help) usage_stop; return 0 ;;
      --dir) need_value "$1" $#; dir_arg=$2; shift 2 ;;
      --timeout) need_value "$1" $#; timeout=$2; shift 2 ;;
      *) usage_error "stop: unknown argument '$1'" ;;
    esac
  done
  [[ -n $dir_arg ]] || usage_error "stop needs --dir DIR"
  check_timeout "$timeout"
  if ! DIR=$(abs_dir "$dir_arg") || ! load_conf; then
    log "no Kafka cluster in $dir_arg; nothing to stop"
    return 0
  fi
  lock_dir
  local n
  local -a running=() all=()
  for ((n = 1; n <= BROKERS; n++)); do
    all+=("$n")
    node_pid "$n" >/dev/null && running+=("$n")
  done
  if ((${#running[@]} == 0)); then
    log "nothing running in $DIR"
    for n in "${all[@]}"; do rm -f "$(node_pid_file "$n")"; done
    return 0
  fi
  log "stopping node(s) ${running[*]} in $DIR"
  if ! signal_and_wait TERM "$timeout" "${running[@]}"; then
    log "still running after $timeout s; sending SIGKILL"
    signal_and_wait KILL 10 "${running[@]}" || die "could not kill the Kafka nodes in $DIR; check 'ps' for kafka.Kafka"
  fi
  for n in "${all[@]}"; do rm -f "$(node_pid_file "$n")"; done
  log "stopped"
}

cmd_kill_node() {
  local dir_arg="" node=""
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h | --help) usage_kill_node; return 0 ;;
      --dir) need_value "$1" $#; dir_arg=$2; shift 2 ;;
      --node) need_value "$1" $#; node=$2; shift 2 ;;
      *) usage_error "kill-node: unknown argument '$1'" ;;
    esac
  done
  require_cluster "$dir_arg"
  check_node_arg "$node"
  node=$((10#$node))
  lock_dir
  if ! node_pid "$node" >/dev/null; then
    log "node $node is not running in $DIR"
    rm -f "$(node_pid_file "$node")"
    return 0
  fi
  signal_and_wait KILL 10 "$node" || die "node $node survived SIGKILL for 10 s"
  rm -f "$(node_pid_file "$node")"
  log "killed node $node (127.0.0.1:$(node_port "$node"))"
}

cmd_status() {
  local dir_arg="" n pid rc=0
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h | --help) usage_status; return 0 ;;
      --dir) need_value "$1" $#; dir_arg=$2; shift 2 ;;
      *) usage_error "status: unknown argument '$1'" ;;
    esac
  done
  [[ -n $dir_arg ]] || usage_error "status needs --dir DIR"
  if ! DIR=$(abs_dir "$dir_arg") || ! load_conf; then
    printf 'no Kafka cluster in %s\n' "$dir_arg"
    return 3
  fi
  load_security
  for ((n = 1; n <= BROKERS; n++)); do
    local sasl=""
    [[ -z $SASL_SSL_PORT ]] || sasl="  SASL_SSL 127.0.0.1:$(node_sasl_ssl_port "$n")"
    if pid=$(node_pid "$n"); then
      printf 'node %s  running  pid %-7s 127.0.0.1:%s%s\n' "$n" "$pid" "$(node_port "$n")" "$sasl"
    else
      printf 'node %s  stopped  pid %-7s 127.0.0.1:%s%s\n' "$n" - "$(node_port "$n")" "$sasl"
      rc=3
    fi
  done
  return "$rc"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    fetch) cmd_fetch "$@" ;;
    start) cmd_start "$@" ;;
    start-node) cmd_start_node "$@" ;;
    stop) cmd_stop "$@" ;;
    kill-node) cmd_kill_node "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage_main ;;
    "") usage_main >&2; exit 2 ;;
    *) usage_error "unknown subcommand '$cmd'" ;;
  esac
}

main "$@"
