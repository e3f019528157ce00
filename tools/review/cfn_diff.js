#!/usr/bin/env node
// One process for every template pair of a report (tools/review/cfn_diff.py starts it).
//
// stdin:  {"pairs": [{"key": "...", "old": {template}|null, "new": {template}|null}, ...]}
// stdout: {"results": [{"key": "...", "resources": [...], "parameters": [...], "outputs": [...],
//          "iam": {...}, "securityGroups": {...}, "permissionsBroadened": bool, "text": "..."}]}
//
// Everything here comes from @aws-cdk/cloudformation-diff (the engine of `cdk diff`): the change
// impact of each resource (from the CloudFormation resource specification it ships), the IAM
// statement and security-group rule changes, and the text rendering. This script only turns its
// objects into JSON; the project's own reading of them is in tools/review/findings.py.
'use strict';

// Colour off before chalk loads (chalk 4 reads FORCE_COLOR once, at require time).
process.env.FORCE_COLOR = '0';

const path = require('path');
const { createRequire } = require('module');

const modules = process.env.CFN_DIFF_MODULES;
if (!modules) {
  process.stderr.write('cfn_diff.js: set CFN_DIFF_MODULES to the node_modules directory that ' +
    'holds @aws-cdk/cloudformation-diff (tools/review/cfn_diff.py does)\n');
  process.exit(2);
}
const cfnDiff = createRequire(path.join(modules, 'noop.js'))('@aws-cdk/cloudformation-diff');

class Collect {
  constructor() { this.chunks = []; this.columns = 120; }
  write(chunk) { this.chunks.push(String(chunk)); return true; }
  text() { return this.chunks.join(''); }
}

function resourceEntry(logicalId, diff) {
  const properties = [];
  const other = [];
  diff.forEachDifference((kind, name, value) => {
    const entry = { name, old: value.oldValue, new: value.newValue };
    if (kind === 'Property') {
      entry.impact = value.changeImpact || null;
      properties.push(entry);
    } else {
      other.push(entry);
    }
  });
  return {
    logicalId,
    oldType: diff.oldResourceType || null,
    newType: diff.newResourceType || null,
    impact: diff.changeImpact,
    isAddition: diff.isAddition,
    isRemoval: diff.isRemoval,
    oldDeletionPolicy: diff.oldValue ? diff.oldValue.DeletionPolicy || null : null,
    properties,
    other,
  };
}

function namedChanges(collection) {
  const out = [];
  collection.forEachDifference((name, diff) => {
    out.push({ name, old: diff.oldValue === undefined ? null : diff.oldValue,
      new: diff.newValue === undefined ? null : diff.newValue });
  });
  return out;
}

function diffPair(pair) {
  const diff = cfnDiff.fullDiff(pair.old || {}, pair.new || {});
  const resources = [];
  diff.resources.forEachDifference((logicalId, change) => {
    resources.push(resourceEntry(logicalId, change));
  });
  const stream = new Collect();
  if (!diff.isEmpty) {
    cfnDiff.formatDifferences(stream, diff);
  }
  const iam = diff.iamChanges;
  return {
    key: pair.key,
    differenceCount: diff.differenceCount,
    resources,
    parameters: namedChanges(diff.parameters),
    outputs: namedChanges(diff.outputs),
    conditions: namedChanges(diff.conditions),
    permissionsBroadened: diff.permissionsBroadened,
    iam: {
      statementAdditions: iam.statements.additions.map((s) => s._toJson()),
      statementRemovals: iam.statements.removals.map((s) => s._toJson()),
      managedPolicyAdditions: iam.managedPolicies.additions.map((p) => p._toJson()),
      managedPolicyRemovals: iam.managedPolicies.removals.map((p) => p._toJson()),
    },
    securityGroups: diff.securityGroupChanges.toJson(),
    text: stream.text(),
  };
}

function main() {
  const chunks = [];
  process.stdin.on('data', (chunk) => chunks.push(chunk));
  process.stdin.on('end', () => {
    const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const results = request.pairs.map(diffPair);
    process.stdout.write(JSON.stringify({ results }));
  });
}

main();
