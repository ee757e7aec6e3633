/*
 * routes_anthropic.c - the anthropic door: its routes land in the next commit.
 */
#include "chat.h"

const api_route api_routes_anthropic[] = {
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
