# bash completion for procregctl(1).
#
# The commands and options come from procregctl itself (its hidden
# "__commands" and "__options [COMMAND]", read from the tables that drive
# its parsing and --help), so this completes what the installed binary
# takes and cannot drift from it.  After hold NAME and serve NAME the rest
# is a command line of its own, completed as one.

# Read "__options [COMMAND]" lines (LONG SHORT ARG) into the array
# _procregctl_takes: the options that take an argument.
_procregctl_takes()
{
	local long short arg

	_procregctl_takes=()
	while read -r long short arg; do
		[[ $arg == - ]] && continue
		_procregctl_takes[$long]=1
		[[ $short != - ]] && _procregctl_takes[$short]=1
	done < <("$@" 2>/dev/null)
}

_procregctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} ctl=${COMP_WORDS[0]}
	local cmd= start= nops=0 i w
	local -A _procregctl_takes

	_procregctl_takes "$ctl" __options
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ ($cmd == hold || $cmd == serve) && $nops -ge 1 &&
		    ($w == -- || $w != -*) ]]; then
			# After NAME: CMD, from here or after the "--".
			start=$i
			[[ $w == -- ]] && start=$((i + 1))
			break
		fi
		if [[ -n ${_procregctl_takes[$w]} ]]; then
			((i++))
		elif [[ $w != -* ]]; then
			if [[ -z $cmd ]]; then
				cmd=$w
				_procregctl_takes "$ctl" __options "$cmd"
			else
				((nops++))
			fi
		fi
	done
	# Completing the word where CMD starts counts too.
	if [[ -z $start && ($cmd == hold || $cmd == serve) && $nops -ge 1 &&
	    $cur != -* && -z ${_procregctl_takes[${COMP_WORDS[COMP_CWORD-1]}]} ]]; then
		start=$COMP_CWORD
	fi
	if [[ -n $start ]]; then
		if declare -F _command_offset >/dev/null; then
			_command_offset "$start"
		elif ((start == COMP_CWORD)); then
			COMPREPLY=($(compgen -c -- "$cur" | sort -u))
		else
			COMPREPLY=($(compgen -f -- "$cur"))
		fi
		return
	fi
	if [[ -n ${_procregctl_takes[${COMP_WORDS[COMP_CWORD-1]}]} ]]; then
		# An option's argument: a path for -s, nothing to offer else.
		case ${COMP_WORDS[COMP_CWORD-1]} in
		-s|--socket) COMPREPLY=($(compgen -f -- "$cur")) ;;
		esac
		return
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$("$ctl" __options $cmd 2>/dev/null |
		    while read -r w _; do echo "$w"; done)" -- "$cur"))
	elif [[ -z $cmd || ($cmd == help && $nops -eq 0) ]]; then
		COMPREPLY=($(compgen -W "$("$ctl" __commands 2>/dev/null)" \
		    -- "$cur"))
	fi
}
complete -F _procregctl procregctl
