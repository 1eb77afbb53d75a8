package main

import "github.com/spf13/cobra"

func newCaptureCmd() *cobra.Command { return &cobra.Command{Use: "capture", Hidden: true} }
func newReplayCmd() *cobra.Command  { return &cobra.Command{Use: "replay", Hidden: true} }
