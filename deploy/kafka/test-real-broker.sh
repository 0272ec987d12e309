#!/usr/bin/env bash
# Placeholder until the real-broker pass lands (issue 6).
echo "real-broker pass: not yet implemented"
