/*
 * routes_ollama.c - the ollama door: its routes land in the next commit.
 */
#include "chat.h"

const api_route api_routes_ollama[] = {
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
